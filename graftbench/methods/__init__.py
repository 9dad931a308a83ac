"""Fine-tuning methods (GRAFT, P-GRAFT, DDPO, INC) and the parts they share."""
