"""loraloop: keep a production LLM chatbot improving after launch.

The core package holds what every layer shares: settings, event contracts,
the exception root and the CLI.
"""

__version__ = "0.1.0"
