"""Synthetic graph datasets for structure-inducing pretraining: a graph whose every node carries a sequence.

Structure-inducing pretraining (McDermott et al., "Structure-inducing pre-training", Nature Machine
Intelligence 2023) adds a metric-learning loss over a graph of the pretraining sequences to masked-LM
pretraining. These generators make datasets where the question "does the graph loss recover a
graph-aligned label that masked-LM alone does not?" means something: each label is written into the
sequences, but only weakly, spread over the whole sequence and under a strong label-free local grammar.

    sequences  the sequence model every generator shares (a Markov chain per node, driven by its labels)
    cliques    disjoint topic cliques, some edges rewired across topics (label `topic`)
    manifold   a random geometric graph on a plane, sphere, torus or Möbius strip (label `region`)
    topology   a cycle with houses, triangles and stars attached (labels `motif`, `role`, `ego`)
    recipes    the generators by name, written in the prepared layout (`seqstruct data prepare NAME`,
               `seqstruct synth NAME -o DIR`), where the `knn` and `link` tasks evaluate them
"""

from __future__ import annotations

from seqstruct.data.synthetic.cliques import CliquesConfig, generate_cliques
from seqstruct.data.synthetic.manifold import (
    LIFTS,
    SHAPES,
    ManifoldConfig,
    generate_manifold,
    geodesic_distance,
)
from seqstruct.data.synthetic.recipes import (
    GENERATOR_VERSION,
    GENERATORS,
    HELDOUT,
    generate,
    generator,
    write_synthetic,
)
from seqstruct.data.synthetic.sequences import ALPHABET, SequenceConfig, SyntheticDataset, node_ids
from seqstruct.data.synthetic.topology import TopologyConfig, canonical_form, ego_classes, generate_topology

__all__ = [
    "ALPHABET",
    "GENERATORS",
    "GENERATOR_VERSION",
    "HELDOUT",
    "LIFTS",
    "SHAPES",
    "CliquesConfig",
    "ManifoldConfig",
    "SequenceConfig",
    "SyntheticDataset",
    "TopologyConfig",
    "canonical_form",
    "ego_classes",
    "generate",
    "generate_cliques",
    "generate_manifold",
    "generate_topology",
    "generator",
    "geodesic_distance",
    "node_ids",
    "write_synthetic",
]
