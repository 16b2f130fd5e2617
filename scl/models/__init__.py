"""Networks: backbones and the SCL model."""
