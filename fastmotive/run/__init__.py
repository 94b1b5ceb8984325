"""A run on disk: the recipe that sets one up and trains it (`recipe`, from the parts in `parts`), its directory
(`directory`), checkpoints, a saved run reopened (`saved`), export, and initial weights from another run."""
