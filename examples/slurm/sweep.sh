#!/bin/bash
#SBATCH --job-name=sweep --array=0-5%2 --gres=gpu:1
#SBATCH --output=sweep-%A_%a.out
echo "trial $SLURM_ARRAY_TASK_ID of array $SLURM_ARRAY_JOB_ID on GPU $CUDA_VISIBLE_DEVICES"
sleep 1
