"""Korean patient names (Hangul), vectorised.

All syllables are in KS X 1001 (the 2,350 Hangul of cp949/EUC-KR), so every name encodes
in cp949 as well as UTF-8.
"""

from __future__ import annotations

import numpy as np

# Common surnames with rough population weights (percent).
SURNAMES = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임",
            "한", "오", "서", "신", "권", "황", "안", "송", "류", "전", "홍", "고", "문", "양", "손"]
_SURNAME_W = np.array([21.6, 14.8, 8.5, 4.7, 4.4, 2.4, 2.1, 2.1, 2.0, 1.7,
                       1.5, 1.5, 1.5, 1.5, 1.4, 1.4, 1.4, 1.4, 1.2, 1.1, 1.1, 0.9, 0.9, 0.9, 0.9])
_SURNAME_P = _SURNAME_W / _SURNAME_W.sum()

GIVEN_SYLLABLES = list(
    "민서준지현수영호진우성재정희은경혜연동석태상훈용철규원하윤예주미숙자옥순남길광"
)


def korean_names(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` names: surname + two given-name syllables (a few with one syllable)."""
    sur = np.asarray(SURNAMES, dtype=object)[rng.choice(len(SURNAMES), size=n, p=_SURNAME_P)]
    syl = np.asarray(GIVEN_SYLLABLES, dtype=object)
    g1 = syl[rng.integers(0, len(syl), size=n)]
    g2 = syl[rng.integers(0, len(syl), size=n)]
    one = rng.random(n) < 0.03
    g2 = np.where(one, "", g2)
    return (sur + g1 + g2).astype(object)
