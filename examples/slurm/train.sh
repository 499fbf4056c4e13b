#!/bin/bash
#SBATCH --job-name=train
#SBATCH --nodes=2 --ntasks-per-node=2 --gres=gpu:8
#SBATCH --time=10:00
#SBATCH --output=train-%j.out
# Each task prints what torchrun or a Slurm-aware launcher would read.
echo "rank $RANK/$WORLD_SIZE local $LOCAL_RANK node $NODE_RANK on $SLURMD_NODENAME" \
     "GPUs $CUDA_VISIBLE_DEVICES master $MASTER_ADDR:$MASTER_PORT nodes $SLURM_JOB_NODELIST"
sleep 2
