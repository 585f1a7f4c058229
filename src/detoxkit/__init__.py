"""detoxkit: make language models stop producing toxic or harmful content.

Import is cheap on purpose: submodules pull in torch and transformers only when used.
"""

__version__ = "0.1.0"
