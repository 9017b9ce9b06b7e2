from kbflow.flows.build_dataset import build_dataset

report = build_dataset(config_path="kbflow.toml", kind="embedding-pairs")
# {"kind", "dir", "rows": {"train", "validation", "test"}, "dropped": {...}, "pii": {...}, "checks": {...}}
