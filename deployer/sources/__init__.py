"""What a deployment names and we read without loading weights: the Hugging Face Hub,
local model and adapter folders, the base model's config and tensor index, adapter configs."""
