"""The embedded default: skills, base-model pre-training and the shipped bricks."""
