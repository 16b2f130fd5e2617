"""Deep clustering by Semantic Contrastive Learning (Huang & Gong, BMVC 2022)."""

__version__ = "0.1.0"
