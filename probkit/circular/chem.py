"""Torsion angles from RDKit molecules: rotatable bonds, conformer torsions and relaxed MMFF scans.

The adapters between molecules and the circular models of :mod:`probkit.circular`: which torsions a
molecule has, their values over a conformer ensemble, and a cheap Boltzmann reference for one torsion
(a relaxed MMFF dihedral scan). They need RDKit, an optional dependency installed with
``pip install "probkit[chem]"``; RDKit is imported inside the functions, so importing
:mod:`probkit.circular` does not need it.

Everything here is NumPy float64 on the CPU; RDKit runs single-threaded so that results repeat
exactly for a given seed. Angles are radians in [-π, π); energies are MMFF kcal/mol.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from probkit._errors import ProbkitError
from probkit._validate import check_choice, check_non_negative_int, check_positive_int
from probkit.circular.boltzmann import GAS_CONSTANT

__all__ = [
    "GAS_CONSTANT_KCAL",
    "Torsion",
    "TorsionScan",
    "conformer_torsions",
    "embed_conformers",
    "relaxed_torsion_scan",
    "rotatable_torsions",
]

#: Molar gas constant in kcal/(mol K), MMFF's energy unit (the one in :mod:`.boltzmann`).
GAS_CONSTANT_KCAL = GAS_CONSTANT["kcal/mol"]

_POLICIES = ("vonmisesnet", "strict", "heavy_atom")

# RDKit's Lipinski rotatable-bond pattern (rdkit.Chem.Lipinski.RotatableBondSmarts), the one
# VonMisesNet applies to the H-added molecule: a single, acyclic bond between two atoms that each
# have another neighbour and are not in a triple bond.
_LIPINSKI_SMARTS = "[!$(*#*)&!D1]-&!@[!$(*#*)&!D1]"

# RDKit's "strict" pattern, as used by rdMolDescriptors.CalcNumRotatableBonds(mol, Strict) (copied
# from RDKit 2026.09's Lipinski.cpp): the Lipinski pattern minus bonds to CX3/tert-butyl rotors,
# methyls and amide-like C(=O)-N/O/S and amidine C(=N+)-N bonds. The test suite checks that the
# counts agree with CalcNumRotatableBonds, so a change upstream shows up there.
_STRICT_SMARTS = (
    "[!$(*#*)&!D1&!$(C(F)(F)F)&!$(C(Cl)(Cl)Cl)&!$(C(Br)(Br)Br)&!$(C([CH3])([CH3])[CH3])"
    "&!$([CH3])&!$([CD3](=[N,O,S])-!@[#7,O,S!D1])&!$([#7,O,S!D1]-!@[CD3]=[N,O,S])"
    "&!$([CD3](=[N+])-!@[#7!D1])&!$([#7!D1]-!@[CD3]=[N+])]-,:;!@"
    "[!$(*#*)&!D1&!$(C(F)(F)F)&!$(C(Cl)(Cl)Cl)&!$(C(Br)(Br)Br)&!$(C([CH3])([CH3])[CH3])"
    "&!$([CH3])]"
)

# RDKit seeds are C ints; -1 means "unseeded".
_MAX_RDKIT_SEED = 2**31 - 1

_INSTALL_HINT = 'install the optional dependency with `pip install "probkit[chem]"`'


def _rdkit():
    """Import RDKit's modules, with an error that says how to install it."""
    try:
        from rdkit import Chem
        from rdkit.Chem import rdDistGeom, rdForceFieldHelpers, rdMolTransforms
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"probkit.circular.chem needs RDKit; {_INSTALL_HINT}.") from error
    return Chem, rdDistGeom, rdForceFieldHelpers, rdMolTransforms


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Torsion:
    """One torsion (dihedral) of a molecule: atoms ``(i, j, k, l)`` about the bond ``j–k``.

    Attributes
    ----------
    atoms : tuple of 4 int
        Atom indices ``(i, j, k, l)``: ``j`` and ``k`` are the ends of the central bond, ``i`` is
        a neighbour of ``j`` and ``l`` a neighbour of ``k`` (:func:`rotatable_torsions` returns
        ``j < k``; reversing the quartet does not change the angle). The dihedral angle is that of the planes
        (i, j, k) and (j, k, l), positive clockwise looking from ``j`` to ``k`` (IUPAC), so trans
        is ±π and cis 0.
    bond : int
        RDKit index of the central bond ``j–k``, or -1 for a quartet given by the user whose
        atoms ``j`` and ``k`` are not bonded.
    """

    atoms: tuple[int, int, int, int]
    bond: int


class TorsionScan(NamedTuple):
    r"""A relaxed dihedral scan and its Boltzmann torsion marginal (see :func:`relaxed_torsion_scan`).

    Attributes
    ----------
    torsion : Torsion
        The scanned torsion.
    angles : ndarray, shape (n_points,)
        The grid :math:`\phi_g = -\pi + 2\pi g / n` in radians.
    energies : ndarray, shape (n_points,)
        MMFF energy (kcal/mol) of the lowest relaxed structure found with the torsion held at
        :math:`\phi_g` (absolute MMFF energies; subtract ``energies.min()`` for a profile).
    density : ndarray, shape (n_points,)
        :math:`p(\phi_g) = e^{-E_g/kT} / Z` in 1/rad, normalised so that
        ``density.sum() * 2 * pi / n_points == 1`` (the periodic trapezoidal rule).
    weights : ndarray, shape (n_points,)
        Quadrature weights ``density * 2 * pi / n_points``: the probabilities of the grid points,
        summing to one. :math:`E[f(\phi)] \approx` ``np.sum(weights * f(angles))``.
    temperature : float
        Temperature in kelvin.
    kT : float
        :math:`k_B T` in kcal/mol (``GAS_CONSTANT_KCAL * temperature``).
    converged : ndarray of bool, shape (n_points,)
        Whether the minimisation that gave ``energies[g]`` converged and held the torsion within
        0.5° of :math:`\phi_g`.
    """

    torsion: Torsion
    angles: np.ndarray
    energies: np.ndarray
    density: np.ndarray
    weights: np.ndarray
    temperature: float
    kT: float  # noqa: N815 - k_B T, as the field writes it
    converged: np.ndarray


# --------------------------------------------------------------------------- input checks


def _check_mol(mol: Any, name: str = "mol"):
    Chem = _rdkit()[0]
    if not isinstance(mol, Chem.Mol):
        raise ProbkitError(
            f"`{name}` must be an RDKit `Chem.Mol`; got {type(mol).__name__}. Build one with "
            "`Chem.MolFromSmiles(...)` or `embed_conformers(smiles, n, seed=0)`."
        )
    return mol


def _has_implicit_hydrogens(mol) -> bool:
    # GetTotalNumHs() without neighbours counts hydrogens that are not atoms of the graph.
    return any(atom.GetTotalNumHs() > 0 for atom in mol.GetAtoms())


def _check_conformers(mol, purpose: str) -> None:
    if mol.GetNumConformers() == 0:
        raise ProbkitError(
            f"`mol` has no conformers; {purpose} needs 3-D coordinates. Generate them with "
            "`embed_conformers(mol, n, seed=0)`."
        )
    for conformer in mol.GetConformers():
        if not conformer.Is3D():
            raise ProbkitError(
                f"conformer {conformer.GetId()} of `mol` is 2-D; {purpose} needs 3-D coordinates. "
                "Generate them with `embed_conformers(mol, n, seed=0)`."
            )


def _as_torsion(mol, torsion: Any, name: str) -> Torsion:
    """Return ``torsion`` (a Torsion or four atom indices) as a validated Torsion of ``mol``."""
    atoms = torsion.atoms if isinstance(torsion, Torsion) else torsion
    try:
        atoms = tuple(atoms)
    except TypeError:
        atoms = None
    if atoms is None or len(atoms) != 4:
        raise ProbkitError(
            f"`{name}` must be a Torsion or four atom indices (i, j, k, l); got {torsion!r}."
        )
    n_atoms = mol.GetNumAtoms()
    checked = []
    for value in atoms:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise ProbkitError(f"`{name}` must hold integer atom indices; got {torsion!r}.")
        if not 0 <= value < n_atoms:
            raise ProbkitError(
                f"`{name}` = {atoms} refers to atom {int(value)}, but `mol` has atoms "
                f"0..{n_atoms - 1}. Check that the torsion was found on this molecule (adding or "
                "removing hydrogens renumbers atoms)."
            )
        checked.append(int(value))
    if len(set(checked)) != 4:
        raise ProbkitError(f"`{name}` = {tuple(checked)} repeats an atom; the four must differ.")
    i, j, k, l = checked  # noqa: E741 - the chemists' names for the four atoms
    bond = mol.GetBondBetweenAtoms(j, k)
    return Torsion((i, j, k, l), -1 if bond is None else bond.GetIdx())


# --------------------------------------------------------------------------- rotatable torsions


def _priority_neighbour(mol, centre: int, partner: int) -> int:
    """The neighbour of ``centre`` (other than ``partner``) that ends the torsion.

    Rule: highest atomic number; ties broken by the atomic numbers of that neighbour's own
    substituents (sorted in decreasing order, hydrogens included whether explicit or implicit,
    compared lexicographically, more substituents winning a shared prefix); remaining ties by the
    lowest atom index.
    """
    best_key, best = None, -1
    for neighbour in mol.GetAtomWithIdx(centre).GetNeighbors():
        index = neighbour.GetIdx()
        if index == partner:
            continue
        substituents = [n.GetAtomicNum() for n in neighbour.GetNeighbors() if n.GetIdx() != centre]
        substituents += [1] * neighbour.GetTotalNumHs()
        key = (neighbour.GetAtomicNum(), tuple(sorted(substituents, reverse=True)), -index)
        if best_key is None or key > best_key:
            best_key, best = key, index
    return best


def _rotatable_bonds(mol, policy: str) -> list[tuple[int, int]]:
    """Atom pairs (j, k), j < k, of the rotatable bonds of ``mol`` under ``policy``."""
    Chem = _rdkit()[0]
    if policy == "vonmisesnet":
        target, index_map = mol, None
        pattern = _LIPINSKI_SMARTS
    else:
        # Heavy-atom graph: the patterns were written for molecules without explicit hydrogens
        # (a methyl carbon is then D1). Tag atoms so indices survive the removal of hydrogens.
        tagged = Chem.Mol(mol)
        for atom in tagged.GetAtoms():
            atom.SetIntProp("_probkit_index", atom.GetIdx())
        target = Chem.RemoveAllHs(tagged)
        index_map = [atom.GetIntProp("_probkit_index") for atom in target.GetAtoms()]
        pattern = _LIPINSKI_SMARTS if policy == "heavy_atom" else _STRICT_SMARTS
    query = Chem.MolFromSmarts(pattern)
    matches = target.GetSubstructMatches(query, uniquify=True, maxMatches=1_000_000)
    pairs = set()
    for j, k in matches:
        if index_map is not None:
            j, k = index_map[j], index_map[k]
        pairs.add((min(j, k), max(j, k)))
    return sorted(pairs)


def rotatable_torsions(mol: Any, *, policy: str = "vonmisesnet") -> list[Torsion]:
    """The torsions of a molecule's rotatable bonds, one per bond.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        The molecule. For ``policy="vonmisesnet"`` it must carry explicit hydrogens
        (``Chem.AddHs(mol)``; :func:`embed_conformers` returns such molecules).
    policy : {"vonmisesnet", "strict", "heavy_atom"}, default "vonmisesnet"
        Which bonds count as rotatable:

        - ``"vonmisesnet"``: RDKit's Lipinski pattern ``[!$(*#*)&!D1]-&!@[!$(*#*)&!D1]`` matched on
          the H-added molecule, as VonMisesNet does. Methyl, hydroxyl and amine rotors and amide
          C–N bonds count: butane has 3 rotatable torsions, ethanol 2, N-methylacetamide 3.
        - ``"heavy_atom"``: the same pattern on the heavy-atom graph (hydrogens removed), i.e.
          RDKit's non-strict ``NumRotatableBonds``: butane 1, ethanol 0, N-methylacetamide 1.
        - ``"strict"``: RDKit's strict pattern on the heavy-atom graph, the bonds counted by
          ``CalcNumRotatableBonds(mol, NumRotatableBondsOptions.Strict)``; it also drops amide
          and amidine C–N bonds and CX3 / tert-butyl rotors: butane 1, N-methylacetamide 0.

    Returns
    -------
    list of Torsion
        One :class:`Torsion` per rotatable bond, sorted by ``(j, k)``, with ``j < k`` the bond's
        atoms and the end atoms ``i`` (on ``j``) and ``l`` (on ``k``) chosen by the rule in Notes.

    Raises
    ------
    ProbkitError
        If ``mol`` is not an RDKit molecule, ``policy`` is unknown, or ``policy="vonmisesnet"``
        and the molecule has implicit hydrogens.

    Notes
    -----
    End atoms. Of the neighbours of ``j`` other than ``k``, ``i`` is the one with the highest atomic
    number; ties are broken by the atomic numbers of the candidates' own substituents (sorted in
    decreasing order and compared lexicographically, hydrogens counted whether explicit or not),
    then by the lowest atom index; likewise ``l`` on ``k``. A hydrogen is chosen only when ``j`` has
    no heavy neighbour besides ``k`` (a methyl or hydroxyl rotor). VonMisesNet's
    ``select_atom_priority_neighbor`` uses the same first two criteria and searches further shells
    before falling back on neighbour order, so the two rules pick the same atoms unless a tie
    survives the first shell of substituents. Changing an end atom shifts the torsion by a
    constant (about ±120° at an sp3 centre), so compare torsion values only under the same rule.

    Examples
    --------
    >>> from rdkit import Chem
    >>> from probkit.circular.chem import rotatable_torsions
    >>> butane = Chem.AddHs(Chem.MolFromSmiles("CCCC"))
    >>> [t.atoms for t in rotatable_torsions(butane)]
    [(4, 0, 1, 2), (0, 1, 2, 3), (1, 2, 3, 11)]
    >>> len(rotatable_torsions(butane, policy="strict"))
    1
    """
    mol = _check_mol(mol)
    policy = check_choice("policy", policy, _POLICIES)
    if policy == "vonmisesnet" and _has_implicit_hydrogens(mol):
        raise ProbkitError(
            "policy='vonmisesnet' is defined on the molecule with explicit hydrogens (methyl and "
            "hydroxyl rotors count), but `mol` has implicit hydrogens. Pass `Chem.AddHs(mol)` "
            "(molecules from `embed_conformers` already have them), or use policy='heavy_atom' "
            "or policy='strict'."
        )
    torsions = []
    for j, k in _rotatable_bonds(mol, policy):
        i = _priority_neighbour(mol, j, k)
        l = _priority_neighbour(mol, k, j)  # noqa: E741
        torsions.append(Torsion((i, j, k, l), mol.GetBondBetweenAtoms(j, k).GetIdx()))
    return torsions


# --------------------------------------------------------------------------- conformer torsions


def conformer_torsions(mol: Any, torsions: Sequence[Any] | None = None) -> np.ndarray:
    """Dihedral angles of every conformer of a molecule.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        A molecule with at least one 3-D conformer.
    torsions : sequence of Torsion or of 4-tuples of atom indices, optional
        The torsions to measure; default ``rotatable_torsions(mol)`` (policy "vonmisesnet", which
        needs explicit hydrogens). Any four distinct atoms are accepted: the angle is between the
        planes (i, j, k) and (j, k, l) whether or not the atoms are bonded.

    Returns
    -------
    ndarray, shape (n_conformers, n_torsions), float64
        Angles in radians in [-π, π) (``rdMolTransforms.GetDihedralRad``, with π mapped to -π),
        conformers in the order of ``mol.GetConformers()``.

    Raises
    ------
    ProbkitError
        If ``mol`` is not an RDKit molecule or has no (or a 2-D) conformer, or a torsion is not four
        distinct in-range atom indices.

    Examples
    --------
    >>> from probkit.circular.chem import conformer_torsions, embed_conformers
    >>> butane = embed_conformers("CCCC", 5, seed=0)
    >>> conformer_torsions(butane).shape
    (5, 3)
    """
    rdMolTransforms = _rdkit()[3]
    mol = _check_mol(mol)
    _check_conformers(mol, "conformer_torsions")
    if torsions is None:
        quartets = [t.atoms for t in rotatable_torsions(mol)]
    else:
        if isinstance(torsions, Torsion):
            torsions = [torsions]
        quartets = [
            _as_torsion(mol, t, f"torsions[{n}]").atoms for n, t in enumerate(list(torsions))
        ]
    conformers = list(mol.GetConformers())
    angles = np.empty((len(conformers), len(quartets)), dtype=np.float64)
    for row, conformer in enumerate(conformers):
        for column, quartet in enumerate(quartets):
            angles[row, column] = rdMolTransforms.GetDihedralRad(conformer, *quartet)
    return np.where(angles >= np.pi, angles - 2 * np.pi, angles)


# --------------------------------------------------------------------------- embedding


def embed_conformers(smiles_or_mol: Any, n: int, *, seed: int, optimize: bool = False):
    """Conformers from RDKit's ETKDGv3 embedding, reproducible for a given seed.

    Parameters
    ----------
    smiles_or_mol : str or rdkit.Chem.Mol
        A SMILES string or a molecule. A molecule is copied; its conformers are discarded.
    n : int
        Number of conformers to embed (>= 1).
    seed : int
        Random seed (any non-negative integer). Conformer ``c`` is embedded with the RDKit seed
        ``base + c``, where ``base`` is hashed from ``seed`` (:class:`numpy.random.SeedSequence`):
        different seeds give unrelated conformer sets, and ``seed=0`` is safe (RDKit's own
        multi-conformer seeding returns ``n`` identical conformers for ``randomSeed=0``).
        Embedding is single-threaded; the coordinates repeat exactly for a given seed, ``n`` and
        RDKit version.
    optimize : bool, default False
        If True, minimise every conformer with MMFF94 (up to 2000 iterations). Neither raw nor
        minimised ETKDG conformers are Boltzmann samples: for butane (100 conformers, seed 0)
        54 % are gauche either way, while the relaxed MMFF94 marginal at 300 K
        (:func:`relaxed_torsion_scan`) puts 37 % on gauche. Minimisation only moves each
        conformer to the bottom of its well.

    Returns
    -------
    rdkit.Chem.Mol
        A new molecule with explicit hydrogens and ``n`` conformers with ids ``0 .. n - 1``.

    Raises
    ------
    ProbkitError
        If the SMILES does not parse, ``n`` or ``seed`` is invalid, embedding produced no
        conformer, or ``optimize`` is True and MMFF has no parameters for the molecule.

    Warns
    -----
    RuntimeWarning
        If ETKDG embedded fewer than ``n`` conformers, or an MMFF minimisation did not converge.

    Examples
    --------
    >>> from probkit.circular.chem import embed_conformers
    >>> ethanol = embed_conformers("CCO", 3, seed=42)
    >>> ethanol.GetNumAtoms(), ethanol.GetNumConformers()
    (9, 3)
    """
    Chem, rdDistGeom, rdForceFieldHelpers, _ = _rdkit()
    n = check_positive_int("n", n)
    seed = check_non_negative_int("seed", seed)
    if n >= _MAX_RDKIT_SEED // 2:
        raise ProbkitError(f"`n` must be below {_MAX_RDKIT_SEED // 2}; got {n}.")
    if isinstance(smiles_or_mol, str):
        parsed = Chem.MolFromSmiles(smiles_or_mol)
        if parsed is None:
            raise ProbkitError(
                f"`smiles_or_mol` = {smiles_or_mol!r} is not a valid SMILES (RDKit could not parse "
                "it; its log above says where). Check the string, or pass a `Chem.Mol`."
            )
    else:
        parsed = Chem.Mol(_check_mol(smiles_or_mol, "smiles_or_mol"))
        parsed.RemoveAllConformers()
    mol = Chem.AddHs(parsed)

    params = rdDistGeom.ETKDGv3()
    # RDKit's own multi-conformer seeding returns n identical conformers for randomSeed=0
    # (measured with RDKit 2026.09). Instead conformer c gets the RDKit seed base + c
    # (enableSequentialRandomSeeds), with base hashed from `seed` so that nearby seeds give
    # unrelated conformer sets rather than shifted copies of one another.
    base = int(np.random.SeedSequence(seed).generate_state(1)[0]) % (_MAX_RDKIT_SEED - n)
    params.randomSeed = base
    params.enableSequentialRandomSeeds = True
    params.numThreads = 1
    ids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=n, params=params))
    if not ids:
        raise ProbkitError(
            f"ETKDG embedded no conformer of {Chem.MolToSmiles(parsed)!r} with seed={seed}; try "
            "another seed, or check the molecule's stereochemistry and valences."
        )
    if len(ids) < n:
        warnings.warn(
            f"ETKDG embedded {len(ids)} of the {n} conformers asked for.",
            RuntimeWarning,
            stacklevel=2,
        )
    if optimize:
        if not rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
            raise ProbkitError(_no_mmff_message(Chem, mol))
        results = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=2000)
        stuck = sum(1 for not_converged, _ in results if not_converged)
        if stuck:
            warnings.warn(
                f"MMFF minimisation did not converge for {stuck} of {len(results)} conformers "
                "in 2000 iterations.",
                RuntimeWarning,
                stacklevel=2,
            )
    return mol


def _no_mmff_message(Chem, mol) -> str:
    return (
        f"MMFF94 has no parameters for {Chem.MolToSmiles(Chem.RemoveHs(mol))!r} (MMFF covers "
        "H, C, N, O, F, Si, P, S, Cl, Br, I and common ions); use another force field for it."
    )


# --------------------------------------------------------------------------- relaxed scan


def relaxed_torsion_scan(
    mol: Any,
    torsion: Any,
    *,
    n_points: int = 36,
    temperature: float = 300.0,
    n_starts: int = 3,
    variant: str = "MMFF94",
    max_iterations: int = 2000,
) -> TorsionScan:
    r"""Relaxed MMFF dihedral scan of one torsion and the Boltzmann marginal it implies.

    At each grid angle :math:`\phi_g = -\pi + 2\pi g/n`, each starting conformer is rotated to
    :math:`\phi_g` (``SetDihedralRad``), the torsion is held there by a stiff MMFF torsion
    constraint, all other coordinates are minimised, and the MMFF energy without the constraint
    is recorded; the lowest energy over the starting conformers is kept. The marginal is
    :math:`p(\phi_g) \propto e^{-E(\phi_g)/kT}`, normalised on the grid.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        A molecule with explicit hydrogens and at least one 3-D conformer (e.g. from
        :func:`embed_conformers`); it is not modified.
    torsion : Torsion or 4 atom indices
        The torsion ``(i, j, k, l)`` to scan; the atoms must form a bonded chain i–j–k–l and the
        bond j–k must not be in a ring.
    n_points : int, default 36
        Grid size (>= 4); 36 gives 10° steps.
    temperature : float, default 300
        Temperature in kelvin; :math:`kT = R T` with R = ``GAS_CONSTANT_KCAL`` kcal/(mol K).
    n_starts : int, default 3
        Number of the molecule's conformers (the first ones) used as starting points at every
        grid angle. Taking the lowest of several relaxations avoids reporting a higher local
        minimum of the other coordinates (a rotor caught in a poor orientation), and, because
        every grid point starts afresh, the profile has no sweep-direction hysteresis.
    variant : {"MMFF94", "MMFF94s"}, default "MMFF94"
        The MMFF variant.
    max_iterations : int, default 2000
        Iteration limit of each constrained minimisation.

    Returns
    -------
    TorsionScan
        Grid, relaxed energies (kcal/mol), density and quadrature weights of the marginal, the
        temperature, kT and per-point convergence flags.

    Raises
    ------
    ProbkitError
        If ``mol`` has no 3-D conformer or has implicit hydrogens, MMFF lacks parameters for it,
        the torsion is invalid (indices out of range, not a bonded chain, ring bond), or an
        argument is out of range.

    Warns
    -----
    RuntimeWarning
        If some grid point did not converge (see ``TorsionScan.converged``).

    Notes
    -----
    This is the relaxed (adiabatic) potential of mean force in the harmonic, single-minimum
    approximation, not the exact Boltzmann marginal
    :math:`p(\phi) \propto \int e^{-E(\phi, x)/kT}\,dx`. It omits the entropy of the other
    coordinates (their vibrational free energy changes with :math:`\phi`), ignores other minima
    of the remaining coordinates (only the lowest relaxation is kept), and uses the gas-phase
    MMFF energy. For butane's C–C–C–C torsion it is a good reference (gauche–trans gap
    ≈ 0.8 kcal/mol in MMFF94); for molecules with coupled rotors sample the full energy instead.
    The grid density is exact for the trapezoidal rule, which converges exponentially fast for
    smooth periodic integrands, so 36–72 points resolve wells with :math:`\kappa_{\mathrm{eff}}`
    up to about 100.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.circular.chem import embed_conformers, relaxed_torsion_scan
    >>> butane = embed_conformers("CCCC", 2, seed=0)
    >>> scan = relaxed_torsion_scan(butane, (0, 1, 2, 3), n_points=12, n_starts=2)
    >>> round(float(np.rad2deg(scan.angles[np.argmin(scan.energies)])))
    -180
    >>> round(float(scan.weights.sum()), 12)
    1.0
    """
    Chem, _, rdForceFieldHelpers, rdMolTransforms = _rdkit()
    mol = _check_mol(mol)
    n_points = check_positive_int("n_points", n_points)
    if n_points < 4:
        raise ProbkitError(f"`n_points` must be >= 4 to resolve a torsion profile; got {n_points}.")
    n_starts = check_positive_int("n_starts", n_starts)
    max_iterations = check_positive_int("max_iterations", max_iterations)
    variant = check_choice("variant", variant, ("MMFF94", "MMFF94s"))
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        temperature = float("nan")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ProbkitError(
            f"`temperature` must be a finite number of kelvin > 0; got {temperature!r}."
        )
    _check_conformers(mol, "relaxed_torsion_scan")
    if _has_implicit_hydrogens(mol):
        raise ProbkitError(
            "`mol` has implicit hydrogens; MMFF needs every hydrogen as an atom with coordinates. "
            "Use `embed_conformers(...)`, or `Chem.AddHs(mol, addCoords=True)` before embedding."
        )
    checked = _as_torsion(mol, torsion, "torsion")
    i, j, k, l = checked.atoms  # noqa: E741
    for a, b in ((i, j), (j, k), (k, l)):
        if mol.GetBondBetweenAtoms(a, b) is None:
            raise ProbkitError(
                f"`torsion` = {checked.atoms} is not a bonded chain: atoms {a} and {b} are not "
                "bonded. A scan rotates about the bond j–k of a chain i–j–k–l."
            )
    if mol.GetBondWithIdx(checked.bond).IsInRing():
        raise ProbkitError(
            f"`torsion` = {checked.atoms} turns about a ring bond ({j}–{k}); a relaxed scan rotates "
            "one side of the bond rigidly, which a ring does not allow. Scan an acyclic bond."
        )
    properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant=variant)
    if properties is None:
        raise ProbkitError(_no_mmff_message(Chem, mol))

    starts = [c.GetId() for c in mol.GetConformers()][:n_starts]
    work = Chem.Mol(mol)  # the caller's coordinates stay untouched
    start_positions = {c: mol.GetConformer(c).GetPositions() for c in starts}
    angles = -np.pi + 2 * np.pi * np.arange(n_points) / n_points
    energies = np.full(n_points, np.inf)
    converged = np.zeros(n_points, dtype=bool)
    for g, phi in enumerate(angles):
        degrees = float(np.rad2deg(phi))
        for c in starts:
            conformer = work.GetConformer(c)
            for atom, position in enumerate(start_positions[c]):
                conformer.SetAtomPosition(atom, position.tolist())
            rdMolTransforms.SetDihedralRad(conformer, i, j, k, l, float(phi))
            field = rdForceFieldHelpers.MMFFGetMoleculeForceField(work, properties, confId=c)
            # 1e4 kcal/(mol rad²) holds the angle to ~1e-5° without stiffening the minimisation.
            field.MMFFAddTorsionConstraint(i, j, k, l, False, degrees, degrees, 1e4)
            status = field.Minimize(maxIts=max_iterations)
            # The energy of the relaxed structure without the constraint's penalty.
            energy = rdForceFieldHelpers.MMFFGetMoleculeForceField(
                work, properties, confId=c
            ).CalcEnergy()
            held = rdMolTransforms.GetDihedralDeg(conformer, i, j, k, l)
            deviation = abs((held - degrees + 180.0) % 360.0 - 180.0)
            if energy < energies[g]:
                energies[g] = energy
                converged[g] = status == 0 and deviation < 0.5
    if not converged.all():
        warnings.warn(
            f"{int((~converged).sum())} of {n_points} relaxed-scan points did not converge in "
            f"{max_iterations} iterations; raise `max_iterations` (see `TorsionScan.converged`).",
            RuntimeWarning,
            stacklevel=2,
        )

    kT = GAS_CONSTANT_KCAL * temperature
    boltzmann = np.exp(-(energies - energies.min()) / kT)
    weights = boltzmann / boltzmann.sum()
    density = weights * n_points / (2 * np.pi)
    return TorsionScan(
        torsion=checked,
        angles=angles,
        energies=energies,
        density=density,
        weights=weights,
        temperature=temperature,
        kT=kT,
        converged=converged,
    )
