#!/bin/bash
#SBATCH --job-name=eval --gres=gpu:1 --output=eval-%j.out
echo "evaluating checkpoint $1"
