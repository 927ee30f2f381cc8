"""Distillation into the local student: SFT data from teacher traces, TRL + PEFT LoRA training, DPO alignment."""
