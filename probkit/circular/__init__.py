"""Von Mises distributions and mixtures for angles and torsions."""
