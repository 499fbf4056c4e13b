"""What users write: manifests (YAML) and, later, #SBATCH scripts. Pydantic lives here only."""
