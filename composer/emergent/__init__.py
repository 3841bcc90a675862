"""Emergent bricks: FFN neurons that specialise during pre-training, found, scored and used.

`profile` records neuron activations, `scores` turns them into functionality scores,
`partition` builds MoEfication experts and skill masks and stores them as bricks, `sparse`
runs the base with only some neurons active, `analyze` does all of it on a base model.
Nothing is imported here: import the submodule you need (no import side effects).
"""
