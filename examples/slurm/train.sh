#!/bin/bash
#SBATCH --job-name=train
#SBATCH --nodes=2 --ntasks-per-node=2 --gres=gpu:8
#SBATCH --time=10:00
#SBATCH --output=train-%j.out
# The batch script runs once, on the first node; srun starts one step on every task
# (as on Slurm). Each task prints what torchrun or a Slurm-aware launcher would read.
echo "batch script on $SLURMD_NODENAME: $SLURM_NNODES nodes, $SLURM_NTASKS tasks ($SLURM_TASKS_PER_NODE)"
srun bash -c 'echo "rank $SLURM_PROCID/$SLURM_NTASKS local $SLURM_LOCALID node $SLURM_NODEID" \
  "on $SLURMD_NODENAME GPUs $CUDA_VISIBLE_DEVICES master $MASTER_ADDR:$MASTER_PORT"'
sleep 2
