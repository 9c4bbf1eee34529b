"""The lab policy's projects: a default project, and each project's MLflow settings."""

from __future__ import annotations

import pytest

from murmur.scheduler.lab_policy import PolicyError, Project, parse_policy


def test_projects_and_the_default_project_are_read() -> None:
    policy = parse_policy(
        """
        [defaults]
        project = "lab"

        [projects.vision]
        mlflow_tracking_uri = "http://mlflow.lab:5000"

        [projects.NLP-2026]
        mlflow_tracking_uri = "file:///data/mlruns"
        mlflow_experiment = "nlp"
        """
    )
    assert policy.default_project == "lab"
    assert policy.projects == {
        "vision": Project("vision", "http://mlflow.lab:5000", ""),
        "NLP-2026": Project("NLP-2026", "file:///data/mlruns", "nlp"),
    }
    assert parse_policy("").projects == {}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[defaults]\nproject = 3", "defaults.project must be a project's name"),
        ('[defaults]\nproject = "a b"', "defaults.project: a project's name is"),
        ("[projects.x]\nmlflow = 1", "unknown key projects.x.mlflow"),
        ('[projects.x]\nmlflow_experiment = "e"', "needs mlflow_tracking_uri"),
        ("[projects.x]\nmlflow_tracking_uri = 5", "must be text"),
        ('[projects."-x"]\nmlflow_tracking_uri = "u"', "projects.-x: a project's name is"),
    ],
)
def test_a_bad_project_setting_is_refused_naming_it(text: str, error: str) -> None:
    with pytest.raises(PolicyError, match=error):
        parse_policy(text)
