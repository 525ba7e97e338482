"""The online run's two judges, settled before anything loads: `judge=` scores the samples, `judge@eval_judge=`
judges every round's evaluation.

Left unset (conf/online.yaml's default), the evaluation's judge is judge=auto: a reward model trained on pairs
disjoint from the run's own, one the loop does not train on. On problems with answers (data=arithmetic, gsm8k,
problems) there are no hand-written pairs for a reward model to learn, so there it follows the loop's own judge
(`judge=function`: exact_match, right by construction). A judge that still cannot serve the run (judge=auto on
problems, set or followed) is refused in one line naming the option and what to set (`check_judge`).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

from ...config import ConfigError, compose_config
from ..judge_training import problem_rows
from ..judges import check_judge

SCORER, EVALUATOR = "judge", "judge@eval_judge"


def settle_judges(cfg: DictConfig) -> None:
    """Put the evaluation's judge into `cfg` where it is unset (`evaluation_judge`), then refuse, in one line, a
    scorer or an evaluation judge that cannot serve the run. Reads configs and at most a data file's first row."""
    if not cfg.get("judge"):
        raise ConfigError("judge: the online loop needs a judge to score its samples (auto, reward, llm or function)")
    follows = not cfg.get("eval_judge") and problem_rows(cfg.data) is not None
    with open_dict(cfg):
        cfg.eval_judge = evaluation_judge(cfg, follows)
    hint = f" ({EVALUATOR}, unset, follows it on problems)" if follows else ""
    check_judge(cfg.judge, cfg, SCORER, hint)
    check_judge(cfg.eval_judge, cfg, EVALUATOR, f", or leave {EVALUATOR} unset: on problems it follows {SCORER}")


def evaluation_judge(cfg: DictConfig, follows: bool) -> DictConfig:
    """`judge@eval_judge` as the config sets it; unset, judge=auto (conf/judge/auto.yaml), or where it `follows` (on
    problems with answers) a copy of the loop's own judge."""
    if cfg.get("eval_judge"):
        return cfg.eval_judge
    if follows:
        return OmegaConf.create(OmegaConf.to_container(cfg.judge))
    return compose_config("eval", ["run_dir=unused", "judge=auto"]).judge
