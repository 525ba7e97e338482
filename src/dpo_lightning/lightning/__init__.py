"""The Lightning side: the training modules (DPO, reward model), their metrics, callbacks, checkpointing, the
strategies' helpers and the precomputed reference's pass (everything that needs the trainer)."""
