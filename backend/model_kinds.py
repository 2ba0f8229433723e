"""The models `train` makes, what each is stored as, and where it is written: defined once.

A *model kind* is what `train --kind` trains (docs/training.md); a *bank kind* is what the bank
file says it holds (docs/formats/bank.md): both single-network baselines are stored as
`single_network` banks, one slot used for every key.
"""

from __future__ import annotations

HASH_BANK = "hash_bank"
SINGLE_COST = "single_cost"
SINGLE_PARAMS = "single_params"
NEURAL_TEXTURE = "neural_texture"

MODEL_KINDS = (HASH_BANK, SINGLE_COST, SINGLE_PARAMS, NEURAL_TEXTURE)
BASELINE_KINDS = (SINGLE_COST, SINGLE_PARAMS)  # what `train --baselines` adds beside a bank
TEACHER_KINDS = (SINGLE_COST, NEURAL_TEXTURE)  # what `teacher="auto"` may train on the labelled pixels

SINGLE_NETWORK = "single_network"
BANK_KINDS = (HASH_BANK, SINGLE_NETWORK, NEURAL_TEXTURE)  # neural_texture banks are torch-only
BANK_KIND_OF = {HASH_BANK: HASH_BANK, SINGLE_COST: SINGLE_NETWORK, SINGLE_PARAMS: SINGLE_NETWORK,
                NEURAL_TEXTURE: NEURAL_TEXTURE}

TEACHER = "teacher"  # the report's name for the teacher a bank and its baselines learned from
DESCRIPTIONS = {
    HASH_BANK: "one network per tile key (the division of labour)",
    SINGLE_COST: "one network, same per-pixel cost",
    SINGLE_PARAMS: "one network, same total parameters (width capped)",
    NEURAL_TEXTURE: "a learned UV feature texture in front of one network (what Deferred Neural "
                    "Rendering or neural materials would use)",
    TEACHER: "the others' teacher, trained on the labelled views only",
}


def companion_suffix(kind: str) -> str:
    """The suffix of the model of `kind` written beside a bank: `face.nfbank` -> `face.single_cost.nfbank`."""
    return f".{kind}.nfbank"
