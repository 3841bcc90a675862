"""Operations on bricks: training (grow / update), merging, weight search, routing."""
