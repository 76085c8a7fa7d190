"""Training: one Run (directory, resume, same-settings check, final metrics) and the only place where
Trainers are built (mlm, structure, contrastive, distill, fine-tuning's arguments)."""
