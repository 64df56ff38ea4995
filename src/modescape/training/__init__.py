"""Training: one member's epochs (`trainer`), their pieces (`loop`), the run directory
(`prepare`) and the executors that run members (`launch`, `slurm`); `ms.train` is
`training.trainer.train`."""
