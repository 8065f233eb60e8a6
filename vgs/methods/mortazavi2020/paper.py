"""The paper's printed values (Mortazavi 2020) that the report sets beside ours.

  * Table 1's parameter counts (audio, image) of the five encoder pairs. They live beside the
    shared pair presets in vgs/nn/speech_rnn.py, whose parameter table and tests check them too;
    they are imported here, not retyped, so that there is one copy.
  * Table 2's R@10 values were lost from our copy of the text: every cell is None ("n/a").
  * Section 5.2: a warm restart improved R@10 by 1.5 to 10 points.
  * The words of the four claims the report judges, quoted.
"""
from __future__ import annotations

from vgs.nn.speech_rnn import PAPER_PAIRS, TABLE1_COUNTS

# (image->speech R@10, speech->image R@10) per pair, None where our copy lost the value.
TABLE2_R10: dict[str, tuple[float | None, float | None]] = {name: (None, None) for name in PAPER_PAIRS}
RESTART_GAIN_POINTS = (1.5, 10.0)   # lowest and highest R@10 gain of a warm restart, in points

# The paper's words for the four claims the report judges (from its results, abstract and conclusion),
# quoted; their R@10 values were lost from our copy, so only the words stand beside ours.
CLAIM_STATEMENTS = {
    "above_chance": '"competitive rates of recall, R@10, can be obtained in the absence of any transfer '
                    'learning" (values lost from our copy)',
    "g3_best": '"Mid-sized DG3A1024 produces better test evaluation results than network pairs that are much '
               'larger or much smaller" (values lost from our copy)',
    "small_audio": '"the size of the audio embedder can be reduced significantly with little loss of recall '
                   'rates" (values lost from our copy)',
    "restart": f"+{RESTART_GAIN_POINTS[0]:g} to +{RESTART_GAIN_POINTS[1]:g} points of R@10 (section 5.2)",
}

__all__ = ["PAPER_PAIRS", "TABLE1_COUNTS", "TABLE2_R10", "RESTART_GAIN_POINTS", "CLAIM_STATEMENTS"]
