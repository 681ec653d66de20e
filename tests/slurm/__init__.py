"""Facts about a real Slurm (tests/slurm_cluster.py) that the bioxen slurm backend relies on."""
