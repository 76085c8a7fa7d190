"""What `seqstruct evaluate --list` prints: the built-in tasks and the methods, one line each.

A static table, so that listing imports no model library (the registry's modules import datasets, torch
and sentence-transformers). tests/evaluation/test_catalogue.py holds it to the registry: every built-in
task is listed with its dataset and kind, and every baseline of `build_method`.
"""

from __future__ import annotations

# name -> (default dataset: data/prepared/<dataset>, kind, what it measures)
TASK_LINES: dict[str, tuple[str, str, str]] = {
    "go-mf": ("swissprot-go", "protein", "multi-label GO molecular function: Fmax, micro-AUPR"),
    "go-mf-class": ("swissprot-go", "protein", "one MF class per protein: accuracy, macro-F1"),
    "protein-link": ("swissprot-go", "protein", "held-out protein links ranked by cosine: MRR, nDCG@10"),
    "knn": ("manifold", "protein", "leave-one-out kNN of each label column: accuracy, AUROC, chance"),
    "link": ("manifold", "protein", "held-out graph links ranked by similarity: MRR, nDCG@10, P@k, R@k"),
    "go-category": ("go-text", "text", "a GO definition's top-level category: accuracy, macro-F1"),
    "go-synonym-search": ("go-text", "text", "a GO synonym retrieves its term's name: MRR@10, recall@k"),
    "go-similarity": ("go-text", "text", "cosine of GO definitions against Lin similarity: Spearman"),
    "go-link": ("go-text", "text", "held-out is_a links among GO definitions by cosine: MRR, nDCG@10"),
    "wordnet-supersense": ("wordnet", "text", "a WordNet gloss's supersense: accuracy, macro-F1"),
    "wordnet-lemma-search": ("wordnet", "text", "a word retrieves its synsets' glosses: MRR@10, recall@k"),
    "wordnet-link": ("wordnet", "text", "held-out hypernym links among glosses by cosine: MRR, nDCG@10"),
}

# MODEL as `seqstruct evaluate MODEL` takes it -> what it is
METHOD_LINES: dict[str, str] = {
    "DIR": "a saved encoder directory (seqstruct pretrain / contrastive, HF or sentence-transformers)",
    "minilm": "all-MiniLM-L6-v2 (packaged), or any packaged protein encoder by name",
    "EMBEDDINGS.npz": "vectors of `seqstruct embed`, looked up by record id (kNN, links, the probe)",
    "lstm:DIR": "a BiLSTM trained from scratch with DIR's tokenizer (--mode finetune)",
    "baseline:naive": "train label frequencies (CAFA's naive predictor)",
    "baseline:aac": "amino-acid composition + the probe",
    "baseline:kmer": "2-mer composition + the probe; cosine of it for kNN and links",
    "baseline:kmer3": "3-mer composition + the probe",
    "baseline:tfidf": "TF-IDF of words and bigrams + the probe; TF-IDF cosine for search",
    "baseline:bm25": "Okapi BM25 text search",
    "baseline:mmseqs": "homology transfer from mmseqs hits in train",
}


def listing() -> str:
    """The tasks and methods, one line each, as `seqstruct evaluate --list` prints them."""
    width = max(map(len, [*TASK_LINES, *METHOD_LINES]))
    lines = ["tasks (--task NAME; default data: data/prepared/DATASET):"]
    lines += [
        f"  {name:<{width}}  {kind:<7} {dataset:<12} {what}"
        for name, (dataset, kind, what) in TASK_LINES.items()
    ]
    lines += ["", "methods (MODEL):"]
    lines += [f"  {name:<{width}}  {what}" for name, what in METHOD_LINES.items()]
    return "\n".join(lines)
