"""The tasks' models: an MLP and a Transformer trunk with a classifier and a character-LM head."""

from qnewton.tasks.models.mlp import MLP
from qnewton.tasks.models.transformer import (
    PAD_ID,
    CharGPT,
    SelfAttention,
    TransformerBlock,
    TransformerClassifier,
)

__all__ = ["MLP", "PAD_ID", "CharGPT", "SelfAttention", "TransformerBlock",
           "TransformerClassifier"]
