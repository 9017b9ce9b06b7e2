from kbflow.client import Client, ServiceUnavailable

# Importing the client loads no model, Prefect or LanceDB: the store's service has them loaded.
kb = Client("kbflow.toml")


def search(text: str, k: int = 5, tenant: str = "public") -> list[dict]:
    try:
        return kb.search(text, k=k, tenant=tenant, mode="vector")
    except ServiceUnavailable:  # no service runs (the client never starts one): search in this process
        from kbflow.config import load_config
        from kbflow.search import search as search_here

        return search_here(load_config("kbflow.toml"), [text], k=k, tenant=tenant, mode="vector")[0]
