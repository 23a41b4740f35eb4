"""Prompts generated from templates kept in the repository (``datasets.<name>.source: templates``).

A template file (YAML) has ``kinds``, each with ``templates`` (strings with a ``{subject}`` field) and
``subjects``; every template of a kind is filled with every subject of that kind. The prompts are HH
text (``"\\n\\nHuman: ...\\n\\nAssistant:"``), rendered with the policy's chat template like any other
source, and carry their ``kind``. Nothing is fetched at run time.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bonbon.prompts import ASSISTANT, PromptFileError

HUMAN = "\n\nHuman: "


def read_template_prompts(path: str | Path) -> pd.DataFrame:
    """Every (template, subject) of every kind of the template file ``path`` as a prompt table
    (columns ``prompt``, ``kind``, ``template``, ``subject``), in file order. Raises PromptFileError
    naming the file and the kind for a malformed file or a template without ``{subject}``."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PromptFileError(f"{path}: cannot read the template file "
                              f"({type(error).__name__}: {error})") from error
    kinds = data.get("kinds") if isinstance(data, dict) else None
    if not isinstance(kinds, dict) or not kinds:
        raise PromptFileError(f"{path}: a template file needs 'kinds': "
                              "{name: {templates: [...], subjects: [...]}}")
    rows = []
    for kind, spec in kinds.items():
        templates = spec.get("templates") if isinstance(spec, dict) else None
        subjects = spec.get("subjects") if isinstance(spec, dict) else None
        for field, values in (("templates", templates), ("subjects", subjects)):
            if (not isinstance(values, list) or not values
                    or not all(isinstance(v, str) and v.strip() for v in values)):
                raise PromptFileError(f"{path}: kinds.{kind}.{field} must be a non-empty list of non-empty "
                                      "strings")
        for t, template in enumerate(templates):
            if "{subject}" not in template:
                raise PromptFileError(f"{path}: kinds.{kind}.templates[{t}] has no {{subject}} field: "
                                      f"{template!r}")
            for subject in subjects:
                text = template.replace("{subject}", subject.strip())
                rows.append({"prompt": f"{HUMAN}{text}{ASSISTANT}", "kind": str(kind), "template": t,
                             "subject": subject.strip()})
    table = pd.DataFrame(rows)
    duplicated = table["prompt"].duplicated()
    if duplicated.any():
        raise PromptFileError(f"{path}: prompt {table['prompt'][duplicated].iloc[0]!r} is generated twice")
    return table
