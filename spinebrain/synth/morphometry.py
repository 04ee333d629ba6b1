"""Mean adult vertebral sizes per level for the synthetic spine (all lengths in mm, angles in degrees).

Derived from /work/shared/MORPHOMETRY.md (the project's cited morphometry notes). The source of
each number is cited in the comment of its row, using that file's tags:
AX52, PAT, PAR, GAL, EJA20, UK08, CDSH, KDH (cervical); P91T, EGW, KAUR16, KIM09, IJAPB, TH100,
KUN11, FLE15 (thoracic); P92, BUS, GN85, CT (CTSP living CT), YAD, GRI, SHIN, Zindrick, CB21,
BON, OMJ, Saluja (lumbar / S1). "interp" marks a value interpolated between cited neighbours and
"est" a value the notes lack (their section 7 "Still missing"): a plausible estimate, not a source.

Body height is the mean of anterior and posterior heights. Living-CT heights run above Panjabi's
cadaveric ones (MORPHOMETRY.md section 7); the rows lean on imaging series where both exist.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LevelSize:
    height: float  # vertebral body height (mean of VBHa and VBHp)
    width: float  # superior endplate width, mediolateral (EPW)
    depth: float  # endplate depth, anteroposterior (EPD)
    disc: float  # middle height of the disc below this level
    canal_depth: float  # spinal canal AP depth (SCD)
    canal_width: float  # spinal canal transverse width (SCW)
    pedicle_width: float  # PDW
    pedicle_height: float  # PDH
    spinous_length: float  # spinous process length (SPL), from the lamina junction
    transverse_span: float  # tip-to-tip width across the transverse processes
    spinous_angle: float  # downward tilt of the spinous process from the horizontal


LEVEL_SIZES: dict[str, LevelSize] = {
    # C1: no body; canal SCD 28.2 / SCW 26.6 [PAT]; TP span 71.2 [PAT]; arch height 10.2 [PAT] (used as
    # ring height); spinous = posterior tubercle (est).
    "C1": LevelSize(10.2, 0.0, 0.0, 0.0, 28.2, 26.6, 0.0, 0.0, 8.0, 71.2, 10.0),
    # C2: heights 18.69/15.96, EPW 15.79, EPD 14.93 [AX52]; canal 14.4 / 21.6 CT [PAR]; disc C2-3 4.1 [CDSH];
    # pedicle 4.9 (C3 value [UK08]); large bifid spinous (est).
    "C2": LevelSize(17.3, 15.8, 14.9, 4.1, 14.4, 21.6, 4.9, 7.0, 22.0, 55.0, 20.0),
    # C3-C7: body height pooled 10.92 [EJA20] with C3 shortest, C7 longest [GN85 text]; EPW C3-C6 [GAL],
    # C7 interp; EPD pooled 14.8 [EJA20] (est trend); disc middle 4.1 CT [CDSH] to 5.8 [KDH];
    # canal C3/C5-C7 [KOR75] is plain film, so SCD uses CT-like pooled 12.3 [EJA20] / C4 12.8 [PAR];
    # SCW pooled 22.0 [EJA20]; PDW C3 4.9, C7 6.6 [UK08], interp between; SPL 15.25 [EJA20], C7 longer (est).
    "C3": LevelSize(10.4, 22.1, 14.6, 4.6, 12.8, 21.8, 4.9, 6.5, 14.0, 52.0, 25.0),
    "C4": LevelSize(10.6, 22.7, 14.8, 4.8, 12.8, 21.9, 5.3, 6.5, 14.5, 53.0, 25.0),
    "C5": LevelSize(10.9, 23.6, 15.0, 4.8, 12.5, 22.0, 5.7, 6.8, 15.0, 54.0, 25.0),
    "C6": LevelSize(11.2, 24.7, 15.6, 4.6, 12.4, 22.1, 6.1, 7.0, 17.0, 56.0, 30.0),
    "C7": LevelSize(12.8, 26.0, 16.2, 4.4, 12.5, 22.0, 6.6, 7.5, 28.0, 64.0, 30.0),
    # T1-T12: height follows VBHp 14.3 (T1) to 22.7 (T12), ~0.8 mm/level [P91T], matched to T2 17.3 and
    # T9 19.6 [EGW] (means of VBHa/VBHp); EPW pooled T2-T9 25.5-27.0 [IJAPB, TH100], T11 35.2 and
    # T12 39.2 / 36.0 [P91T, YAD]; EPD pooled T2-T9 18.5-20.8 [IJAPB, TH100], T1 and T10-T12 est;
    # disc 4.5-7.2 [KUN11], smallest at T4-5, rising caudally [FLE15]; canal T11 16.0/19.4 and
    # T12 18.1/22.2 [P91T], upper thoracic est with SCW narrowest at T7 [Tyagi trend]; PDW T1 9.3,
    # T4 4.5, T12 8.3 [KAUR16], T5 4.4 [KIM09], T11 9.75 [P91T], others interp; PDH 9.6 [TH100];
    # SPL and TP span: longest at T6 [Tyagi trend], values est; spinous tilt est (steepest mid-thoracic).
    "T1": LevelSize(15.0, 27.0, 16.5, 4.0, 14.5, 18.5, 9.3, 9.0, 34.0, 74.0, 35.0),
    "T2": LevelSize(17.3, 25.5, 17.5, 3.8, 14.5, 17.5, 6.5, 9.5, 36.0, 72.0, 45.0),
    "T3": LevelSize(17.0, 25.5, 18.5, 3.7, 14.5, 17.0, 5.2, 9.5, 38.0, 72.0, 55.0),
    "T4": LevelSize(17.3, 25.5, 19.0, 3.6, 14.5, 16.5, 4.5, 9.6, 40.0, 71.0, 60.0),
    "T5": LevelSize(17.8, 26.0, 19.5, 3.8, 14.5, 16.2, 4.4, 9.6, 41.0, 70.0, 60.0),
    "T6": LevelSize(18.3, 26.5, 20.0, 4.2, 14.5, 16.0, 4.8, 9.8, 42.0, 70.0, 60.0),
    "T7": LevelSize(18.8, 27.0, 20.5, 4.6, 14.5, 16.0, 5.2, 10.0, 40.0, 68.0, 55.0),
    "T8": LevelSize(19.2, 28.0, 21.5, 5.0, 14.8, 16.5, 5.7, 10.5, 38.0, 66.0, 50.0),
    "T9": LevelSize(19.6, 29.0, 22.5, 5.4, 15.0, 17.0, 6.5, 11.5, 35.0, 62.0, 45.0),
    "T10": LevelSize(20.6, 31.0, 24.5, 5.8, 15.4, 17.8, 8.0, 13.0, 32.0, 58.0, 35.0),
    "T11": LevelSize(21.6, 35.2, 27.0, 6.2, 16.0, 19.4, 9.75, 15.0, 30.0, 52.0, 25.0),
    "T12": LevelSize(22.7, 37.5, 29.5, 6.4, 16.5, 22.2, 8.5, 15.0, 30.0, 50.0, 15.0),
    # L1-L5: height = mean of VBHa/VBHp [GN85] (CT cohort [CT] reads ~2-3 mm higher); EPW [P92] (SEM),
    # with YAD within 1 mm; EPD L5 35.7 [CB21], L1-L4 est (interp towards T12 est); disc below = mean of
    # [SHIN] and [CT]; T12-L1 disc 6.4 [YAD]; SCD mean of [P92] and [GRI]; SCW [P92]; PDW [Zindrick],
    # L5 16.1 [CB21]; PDH L5 12.9 [CB21], L1-L4 est; TP span L1 68 (weak, CTSP), L5 85.9 [BON], L2-L4
    # from single TP lengths L2 15 / L3 19 / L4 15 [Li Bing 2003]; SPL est (smallest at L5 [PMC8664751]).
    "L1": LevelSize(26.3, 41.2, 32.0, 7.8, 17.2, 23.7, 8.7, 15.0, 32.0, 68.0, 10.0),
    "L2": LevelSize(27.1, 42.6, 33.0, 8.8, 16.5, 23.8, 8.9, 15.0, 33.0, 76.0, 8.0),
    "L3": LevelSize(27.9, 44.1, 34.0, 9.5, 15.8, 24.3, 10.3, 14.5, 33.0, 86.0, 5.0),
    "L4": LevelSize(27.3, 46.6, 35.0, 9.8, 17.0, 25.4, 12.9, 14.0, 30.0, 80.0, 5.0),
    "L5": LevelSize(27.0, 47.3, 35.7, 8.8, 17.6, 27.1, 16.1, 12.9, 25.0, 86.0, 5.0),
    # S1: body width 40.3 [OMJ]; pedicle height 20.7 [Saluja] (used as the S1 lamina height);
    # height, depth and canal est (no sourced S1 endplate data, MORPHOMETRY.md section 3);
    # "disc" is the fused S1-S2 remnant (est). transverse_span = width across the alae (est).
    "S1": LevelSize(28.0, 44.0, 34.0, 2.0, 14.0, 28.0, 20.0, 20.7, 15.0, 100.0, 10.0),
}

# Central concavity (mm) of each endplate. The table's heights are rim heights (VBHa / VBHp are
# measured at the rims) and its disc heights are middle heights, measured at the endplate centres:
# the rim-to-rim gap between two bodies is the middle height less both concavities. Lumbar: middle
# vs mean rim disc heights ([BUS], about 11.8 vs 9.5) give about 1.2 per endplate, and the VerSe case
# A8 reads centre body heights 1-3 mm under its rim heights; cervical: middle 4.1 vs rims 2.6 / 1.8
# [CDSH]; thoracic: middle about 23 % above the rims [KUN11]. S1's superior endplate is mostly flat.
ENDPLATE_CUP = {"C2": 0.9, "cervical": 0.9, "thoracic": 0.7, "lumbar": 1.2, "S1": 0.3, "sacral": 0.0}

# Transitional levels copy their neighbour: T13 is a thirteenth rib-bearing thoracic vertebra
# shaped like T12, and L6 a sixth lumbar vertebra shaped like L5 (MORPHOMETRY.md section 6).
LEVEL_SIZES["T13"] = LEVEL_SIZES["T12"]
LEVEL_SIZES["L6"] = LEVEL_SIZES["L5"]

# Lower sacral segments S2..S5: (height, body width, ala half-span) shrinking caudally (est;
# the whole sacrum + coccyx is about 12.5 cm [Gray's, MORPHOMETRY.md section 5]).
SACRAL_SEGMENTS = [(24.0, 36.0, 45.0), (19.0, 30.0, 35.0), (15.0, 24.0, 24.0), (12.0, 18.0, 15.0)]

# Regional curvature, supine (MORPHOMETRY.md section 4): (mean, SD) of the Cobb-like angle.
CERVICAL_LORDOSIS = (15.0, 12.0)  # C2-C7: 12.7 meta-analysis [Guo 2018], 21-27 in volunteers; 64 % lordotic
THORACIC_KYPHOSIS = (38.0, 11.0)  # T4-T12 41 +- 12 standing; lower supine; 17-33 (T3-T10) in Koreans
LUMBAR_LORDOSIS = (37.0, 12.0)  # T12-S1 recumbent 36.8 +- 13.2 [PMC6680033]
SACRAL_KYPHOSIS = (55.0, 10.0)  # curvature of the sacrum S1-S5 (est)

# Transitional-anatomy prior (MORPHOMETRY.md section 6, "Suggested sampling prior").
RATE_ELEVEN_THORACIC = 0.06  # 11 thoracic vertebrae / rib pairs: about 5-8 %
RATE_THIRTEEN_THORACIC = 0.01  # 13 rib pairs: 0.4 % or less; raised so the model sees some
RATE_SIX_LUMBAR = 0.05  # 6 lumbar-type vertebrae: about 4-7 %
RATE_FOUR_LUMBAR = 0.03  # sacralised L5 counted as sacrum (est share of the 10-18 % LSTV)
RATE_LSTV = 0.12  # LSTV with enlarged last-lumbar transverse processes: 10-18 %
