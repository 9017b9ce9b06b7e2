from kbflow.config import load_config
from kbflow.search import search

hits = search(load_config("kbflow.toml"), ["How do I restore a backup?"], k=5, tenant="public")[0]
