"""streamdet.models: HTS-AT and AST in PyTorch, their front-ends, and checkpoint loading (needs torch)."""
