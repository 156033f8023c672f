"""RDKit adapters: rotatable torsions, conformer torsions, ETKDG embedding, relaxed MMFF scans."""

import numpy as np
import pytest

pytest.importorskip("rdkit")

from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdMolDescriptors

from probkit import ProbkitError
from probkit.circular.chem import (
    GAS_CONSTANT_KCAL,
    Torsion,
    conformer_torsions,
    embed_conformers,
    relaxed_torsion_scan,
    rotatable_torsions,
)

BUTANE_CCCC = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def butane():
    return embed_conformers("CCCC", 4, seed=7)


@pytest.fixture(scope="module")
def butane_scan(butane):
    return relaxed_torsion_scan(butane, BUTANE_CCCC, n_points=18, n_starts=2)


def numpy_dihedral(positions, i, j, k, l):  # noqa: E741
    """IUPAC dihedral from coordinates, independent of RDKit:
    φ = atan2(|b2| b1·(b2×b3), (b1×b2)·(b2×b3)) with b1 = r_j - r_i, b2 = r_k - r_j, b3 = r_l - r_k."""
    b1, b2, b3 = (
        positions[j] - positions[i],
        positions[k] - positions[j],
        positions[l] - positions[k],
    )
    y = np.linalg.norm(b2) * np.dot(b1, np.cross(b2, b3))
    x = np.dot(np.cross(b1, b2), np.cross(b2, b3))
    return np.arctan2(y, x)


# --------------------------------------------------------------------------- rotatable torsions


@pytest.mark.parametrize(
    ("smiles", "counts"),
    [
        ("CCCC", {"vonmisesnet": 3, "heavy_atom": 1, "strict": 1}),
        ("CCO", {"vonmisesnet": 2, "heavy_atom": 0, "strict": 0}),
        ("CC(=O)NC", {"vonmisesnet": 3, "heavy_atom": 1, "strict": 0}),  # amide C-N
    ],
)
def test_rotatable_torsion_counts_under_each_policy(smiles, counts):
    with_hydrogens = Chem.AddHs(Chem.MolFromSmiles(smiles))
    heavy_only = Chem.MolFromSmiles(smiles)
    for policy, count in counts.items():
        assert len(rotatable_torsions(with_hydrogens, policy=policy)) == count
        if policy != "vonmisesnet":  # heavy-atom policies do not care whether H are explicit
            assert rotatable_torsions(heavy_only, policy=policy) == rotatable_torsions(
                with_hydrogens, policy=policy
            )


@pytest.mark.parametrize(
    "smiles",
    ["CCCC", "CC(=O)NC", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "FC(F)(F)CC", "CC(C)(C)CCO", "CC(=N)NCC",
     "c1ccccc1-c1ccccc1", "CCOC(=O)CC", "C[NH+]=C(N)CC", "CC#CC"],
)  # fmt: skip
def test_strict_and_heavy_atom_policies_count_what_rdkit_counts(smiles):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    options = rdMolDescriptors.NumRotatableBondsOptions
    heavy = Chem.RemoveHs(mol)
    assert len(rotatable_torsions(mol, policy="strict")) == rdMolDescriptors.CalcNumRotatableBonds(
        heavy, options.Strict
    )
    assert len(rotatable_torsions(mol, policy="heavy_atom")) == (
        rdMolDescriptors.CalcNumRotatableBonds(heavy, options.NonStrict)
    )


def test_end_atoms_follow_the_priority_rule():
    butane = Chem.AddHs(Chem.MolFromSmiles("CCCC"))  # C 0-3, H 4-6 on C0, H 11-13 on C3
    assert [t.atoms for t in rotatable_torsions(butane)] == [
        (4, 0, 1, 2),  # methyl rotor: three tied H, lowest index
        BUTANE_CCCC,
        (1, 2, 3, 11),
    ]
    amide = Chem.AddHs(Chem.MolFromSmiles("CC(=O)NC"))  # C0 C1 O2 N3 C4
    (c_n,) = rotatable_torsions(amide, policy="heavy_atom")
    assert c_n.atoms == (2, 1, 3, 4)  # the carbonyl O outranks the methyl C on C1
    # A tie on atomic number is broken by the substituents: CH2OH outranks CH3 on the central C.
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(CO)CC"))  # C0 C1 C2 O3 C4 C5
    (torsion,) = [t for t in rotatable_torsions(mol, policy="heavy_atom") if t.atoms[1:3] == (1, 4)]
    assert torsion.atoms == (2, 1, 4, 5)
    bond = mol.GetBondWithIdx(torsion.bond)
    assert {bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()} == {1, 4}


def test_vonmisesnet_policy_refuses_implicit_hydrogens():
    with pytest.raises(ProbkitError, match=r"Chem.AddHs\(mol\)"):
        rotatable_torsions(Chem.MolFromSmiles("CCCC"))


def test_rotatable_torsions_rejects_bad_arguments():
    with pytest.raises(ProbkitError, match=r"`mol` must be an RDKit `Chem\.Mol`; got str"):
        rotatable_torsions("CCCC")
    with pytest.raises(ProbkitError, match="`policy` must be one of"):
        rotatable_torsions(Chem.MolFromSmiles("CCCC"), policy="lipinski")


# --------------------------------------------------------------------------- conformer torsions


def test_conformer_torsions_agree_with_a_numpy_dihedral(butane):
    torsions = rotatable_torsions(butane)
    angles = conformer_torsions(butane)
    assert angles.shape == (butane.GetNumConformers(), len(torsions))
    assert angles.dtype == np.float64
    assert ((angles >= -np.pi) & (angles < np.pi)).all()
    for row, conformer in enumerate(butane.GetConformers()):
        positions = conformer.GetPositions()
        for column, torsion in enumerate(torsions):
            want = numpy_dihedral(positions, *torsion.atoms)
            assert angles[row, column] == pytest.approx(want, abs=1e-10)
    # Explicit quartets (tuples or Torsion objects) measure the same angles.
    explicit = conformer_torsions(butane, [BUTANE_CCCC, torsions[0]])
    np.testing.assert_allclose(explicit, angles[:, [1, 0]], atol=0)
    assert conformer_torsions(butane, []).shape == (butane.GetNumConformers(), 0)


def test_conformer_torsions_rejects_bad_input(butane):
    with pytest.raises(ProbkitError, match="`mol` has no conformers"):
        conformer_torsions(Chem.AddHs(Chem.MolFromSmiles("CCCC")))
    flat = Chem.MolFromSmiles("CCCC")
    rdDistGeom.EmbedMolecule(flat, randomSeed=1)
    flat.GetConformer().Set3D(False)
    with pytest.raises(ProbkitError, match="is 2-D"):
        conformer_torsions(flat, [BUTANE_CCCC])
    with pytest.raises(ProbkitError, match=r"`torsions\[1\]` = \(0, 1, 2, 99\) refers to atom 99"):
        conformer_torsions(butane, [BUTANE_CCCC, (0, 1, 2, 99)])
    with pytest.raises(ProbkitError, match="repeats an atom"):
        conformer_torsions(butane, [(0, 1, 2, 1)])
    with pytest.raises(ProbkitError, match="four atom indices"):
        conformer_torsions(butane, [(0, 1, 2)])
    with pytest.raises(ProbkitError, match="integer atom indices"):
        conformer_torsions(butane, [(0, 1, 2, 3.0)])


# --------------------------------------------------------------------------- embedding


def test_embedding_is_reproducible_for_a_seed_and_adds_hydrogens():
    first = embed_conformers("CCO", 3, seed=11)
    again = embed_conformers("CCO", 3, seed=11)
    other = embed_conformers("CCO", 3, seed=12)
    assert first.GetNumAtoms() == 9
    assert [c.GetId() for c in first.GetConformers()] == [0, 1, 2]
    np.testing.assert_array_equal(
        first.GetConformer(2).GetPositions(), again.GetConformer(2).GetPositions()
    )
    assert not np.allclose(
        first.GetConformer(0).GetPositions(), other.GetConformer(0).GetPositions()
    )
    # A molecule is copied and re-embedded; the caller's molecule keeps its conformers.
    from_mol = embed_conformers(first, 2, seed=11)
    assert from_mol.GetNumConformers() == 2
    assert first.GetNumConformers() == 3


def test_embedding_with_mmff_optimisation_lowers_the_energy():
    from rdkit.Chem import rdForceFieldHelpers

    raw = embed_conformers("CCO", 2, seed=3)
    optimised = embed_conformers("CCO", 2, seed=3, optimize=True)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(raw)
    for c in range(2):
        e_raw = rdForceFieldHelpers.MMFFGetMoleculeForceField(raw, props, confId=c).CalcEnergy()
        e_opt = rdForceFieldHelpers.MMFFGetMoleculeForceField(
            optimised, props, confId=c
        ).CalcEnergy()
        assert e_opt < e_raw


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"smiles_or_mol": "C1CC", "n": 1, "seed": 0}, "is not a valid SMILES"),
        ({"smiles_or_mol": 3, "n": 1, "seed": 0}, "`smiles_or_mol` must be an RDKit"),
        ({"smiles_or_mol": "CC", "n": 0, "seed": 0}, "`n` must be a positive integer"),
        ({"smiles_or_mol": "CC", "n": 1, "seed": -1}, "`seed` must be a non-negative integer"),
    ],
)
def test_embedding_rejects_bad_input(kwargs, match):
    with pytest.raises(ProbkitError, match=match):
        embed_conformers(**kwargs)


# --------------------------------------------------------------------------- relaxed scan


def test_butane_relaxed_scan_has_trans_minimum_and_symmetric_gauche_wells(butane_scan):
    scan = butane_scan
    degrees = np.rad2deg(scan.angles)
    relative = scan.energies - scan.energies.min()
    assert scan.converged.all()
    assert degrees[np.argmin(scan.energies)] == -180.0  # trans is the global minimum
    assert degrees[np.argmax(scan.energies)] == 0.0  # cis is the top of the profile
    # E(φ) = E(-φ): grid index g ↔ n - g.
    mirror = relative[(-np.arange(scan.angles.size)) % scan.angles.size]
    np.testing.assert_allclose(relative, mirror, atol=0.02)
    # Gauche wells: local minima of the 20° grid at ±60°; a parabola through the three lowest
    # points puts the minimum at 60-70° (MMFF94 gauche ≈ 65°), 0.5-1.1 kcal/mol above trans.
    for sign in (1, -1):
        g = int(np.flatnonzero(np.isclose(degrees, sign * 60.0))[0])
        left, centre, right = relative[g - 1], relative[g], relative[(g + 1) % relative.size]
        assert centre < left
        assert centre < right
        offset = 0.5 * (left - right) / (left - 2 * centre + right)  # in grid steps
        vertex = degrees[g] + 20.0 * offset
        assert 55.0 <= abs(vertex) <= 75.0
        assert 0.5 <= centre <= 1.1


def test_scan_density_is_the_normalised_boltzmann_factor(butane_scan):
    scan = butane_scan
    n = scan.angles.size
    assert scan.kT == pytest.approx(GAS_CONSTANT_KCAL * 300.0)
    assert scan.weights.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.sum(scan.density) * 2 * np.pi / n == pytest.approx(1.0, abs=1e-14)
    log_ratio = np.log(scan.weights / scan.weights[0])
    np.testing.assert_allclose(log_ratio, -(scan.energies - scan.energies[0]) / scan.kT, atol=1e-10)
    trans = np.abs(scan.angles) > np.deg2rad(120)
    assert 0.4 < scan.weights[trans].sum() < 0.9
    assert scan.torsion.atoms == BUTANE_CCCC


def test_scan_at_lower_temperature_puts_more_weight_on_trans(butane):
    cold = relaxed_torsion_scan(butane, BUTANE_CCCC, n_points=12, n_starts=1, temperature=200)
    hot = relaxed_torsion_scan(butane, BUTANE_CCCC, n_points=12, n_starts=1, temperature=600)
    np.testing.assert_array_equal(cold.energies, hot.energies)  # deterministic relaxations
    assert cold.weights[0] > hot.weights[0]  # index 0 is φ = -180°


def test_scan_leaves_the_input_coordinates_untouched(butane):
    before = butane.GetConformer(0).GetPositions()
    relaxed_torsion_scan(butane, Torsion(BUTANE_CCCC, 1), n_points=4, n_starts=1)
    np.testing.assert_array_equal(butane.GetConformer(0).GetPositions(), before)


def test_scan_rejects_bad_input(butane):
    no_hydrogens = Chem.MolFromSmiles("CCCC")
    rdDistGeom.EmbedMolecule(no_hydrogens, randomSeed=1)
    with pytest.raises(ProbkitError, match="implicit hydrogens; MMFF needs"):
        relaxed_torsion_scan(no_hydrogens, BUTANE_CCCC)
    with pytest.raises(ProbkitError, match="`mol` has no conformers"):
        relaxed_torsion_scan(Chem.AddHs(Chem.MolFromSmiles("CCCC")), BUTANE_CCCC)
    with pytest.raises(ProbkitError, match="refers to atom 20"):
        relaxed_torsion_scan(butane, (0, 1, 2, 20))
    with pytest.raises(ProbkitError, match="not a bonded chain: atoms 0 and 2"):
        relaxed_torsion_scan(butane, (1, 0, 2, 3))
    with pytest.raises(ProbkitError, match="`temperature` must be"):
        relaxed_torsion_scan(butane, BUTANE_CCCC, temperature=0)
    with pytest.raises(ProbkitError, match="`n_points` must be >= 4"):
        relaxed_torsion_scan(butane, BUTANE_CCCC, n_points=3)
    ring = embed_conformers("C1CCCCC1", 1, seed=0)
    with pytest.raises(ProbkitError, match="ring bond"):
        relaxed_torsion_scan(ring, (0, 1, 2, 3))
    selenide = embed_conformers("CC[Se]CC", 1, seed=0)
    with pytest.raises(ProbkitError, match="MMFF94 has no parameters"):
        relaxed_torsion_scan(selenide, (0, 1, 2, 3))
