"""Character-level protein tokenizer, built with `tokenizers` and wrapped as a `PreTrainedTokenizerFast`.

The vocabulary follows ESM-2's order (specials first, then residues by frequency) so that ids read
familiarly to ESM users; it is saved with every model, so nothing depends on the order elsewhere.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from seqstruct.data import fasta

CLS, PAD, EOS, UNK, MASK = "<cls>", "<pad>", "<eos>", "<unk>", "<mask>"
# The IUPAC protein letters of data.fasta in ESM-2's vocabulary order: the 20 standard residues by
# frequency, then X (any), B (D/N), U (Sec), Z (E/Q), O (Pyl). The order fixes the token ids.
RESIDUES = "LAGVSERTIDPKQNFYMHWCXBUZO"
# fasta.STANDARD_RESIDUES in the vocabulary's order (the order MLM's replacement pool is listed in).
STANDARD_RESIDUES = "".join(r for r in RESIDUES if r in fasta.STANDARD_RESIDUES)
VOCAB = [CLS, PAD, EOS, UNK, *RESIDUES, MASK]
# Proteins have no hard length limit with rotary positions; callers pass max_length explicitly.
MODEL_MAX_LENGTH = 1_000_000


def build_protein_tokenizer() -> PreTrainedTokenizerFast:
    """Return a fresh protein tokenizer: `<cls> residues <eos>`, one token per residue, lowercase accepted."""
    vocab = {token: i for i, token in enumerate(VOCAB)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Uppercase in the tokenizer too, so Python callers may pass raw lowercase strings as FASTA allows.
    core.normalizer = normalizers.Sequence(
        [normalizers.Replace(letter.lower(), letter) for letter in RESIDUES]
    )
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {EOS}",
        pair=f"{CLS} $A {EOS} $B:1 {EOS}:1",
        special_tokens=[(CLS, vocab[CLS]), (EOS, vocab[EOS])],
    )
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=CLS,
        cls_token=CLS,
        eos_token=EOS,
        sep_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        mask_token=MASK,
        model_max_length=MODEL_MAX_LENGTH,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def residue_token_ids(tokenizer: PreTrainedTokenizerFast, standard_only: bool = True) -> list[int]:
    """Ids of residue tokens: the pool that MLM's random replacement draws from."""
    letters = STANDARD_RESIDUES if standard_only else RESIDUES
    return tokenizer.convert_tokens_to_ids(list(letters))


def is_protein_tokenizer(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True for the character-level protein tokenizer (its vocabulary is exactly VOCAB): proteins are
    cropped by residues and masked with residues; any other tokenizer is a pretrained text one."""
    return set(tokenizer.get_vocab()) == set(VOCAB)


def replacement_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids MLM's random replacement draws from: the standard residues for proteins; for a text tokenizer
    every vocabulary id that is not a special token (BERT's recipe: a random word piece)."""
    if is_protein_tokenizer(tokenizer):
        return residue_token_ids(tokenizer)
    special = set(tokenizer.all_special_ids)
    return [i for i in sorted(tokenizer.get_vocab().values()) if i not in special]
