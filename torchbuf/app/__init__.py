"""The main job and the command line: record an expert, clone it, train GAIL, evaluate, report."""
