"""Fine-tuning datasets from the index and labeled sources: kinds, queries, negatives, hygiene, card.

`kbflow.flows.build_dataset` wires these stages; each module holds one of them
(see `snapshot`'s docstring for the order).
"""
