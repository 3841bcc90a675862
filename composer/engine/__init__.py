"""The engine: one resident base model, bricks in resident slots, batched generation."""
