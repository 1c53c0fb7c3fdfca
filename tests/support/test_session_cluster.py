"""The session's choice of cluster and what it skips, without a cluster (fast).

cluster/context.sh is replaced by small scripts that print what it prints; the skip planning is
checked as a function and once through a whole (in-process) pytest run.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.support import cluster as support
from tests.support import images
from tests.support.cluster import (
    BESIDE_LOCAL,
    BESIDE_LOCAL_ENV,
    BESIDE_LOCAL_REASON,
    LOCAL_NODE,
    LOCAL_NODE_REASON,
    ClusterChoice,
    ClusterChoiceError,
    Collected,
    choice_from_exports,
    choose_cluster,
    parse_exports,
    plan_skips,
    single_kubeconfig,
)

pytest_plugins = ["pytester"]

KIND = ClusterChoice("/home/u/.kube/config", "/usr/bin/kubectl", "kind-x", "kind", "home")
LOCAL = ClusterChoice(
    "/var/lib/podtrail/cluster/kubeconfig", "kubectl", "podtrail", "local", "local"
)


def exports_script(path: Path, values: dict[str, str], *, rc: int = 0, said: str = "") -> Path:
    """A stand-in for cluster/context.sh: its arguments and `said` on stderr, the values as
    `export NAME=VALUE` lines quoted by bash's printf %q, exit code `rc`."""
    lines = ['printf "args: %s\\n" "$*" >&2', f"printf '%s\\n' {shlex.quote(said)} >&2"]
    for name, value in values.items():
        lines.append(f"printf 'export %s=%q\\n' {name} {shlex.quote(value)}")
    lines.append(f"exit {rc}")
    path.write_text("\n".join(lines) + "\n")
    return path


def exported(kubeconfig: str, flavour: str = "kind", source: str = "home") -> dict[str, str]:
    return {
        "KUBECONFIG": kubeconfig,
        "KUBECTL": "/opt/k 8s/kubectl",
        "KUBE_CONTEXT": f"{flavour}-x",
        "CLUSTER_FLAVOUR": flavour,
        "CLUSTER_SOURCE": source,
    }


# --- reading what context.sh prints -----------------------------------------------------------


def test_exports_quoted_by_printf_q_read_back_exactly() -> None:
    odd = "/tmp/a dir/it's $HOME\\config"
    out = subprocess.run(
        ["bash", "-c", 'printf "export %s=%q\\n" KUBECONFIG "$1" KUBECTL kubectl', "_", odd],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert parse_exports(out) == {"KUBECONFIG": odd, "KUBECTL": "kubectl"}


def test_a_line_that_is_no_export_is_refused() -> None:
    with pytest.raises(ValueError, match="not an export line"):
        parse_exports("export A=1\nsomething else\n")


def test_every_variable_is_needed_and_the_flavour_known() -> None:
    values = exported("/k")
    assert choice_from_exports(values).flavour == "kind"
    with pytest.raises(ValueError, match="KUBE_CONTEXT"):
        choice_from_exports({**values, "KUBE_CONTEXT": ""})
    with pytest.raises(ValueError, match="unknown flavour"):
        choice_from_exports({**values, "CLUSTER_FLAVOUR": "gke"})


def test_the_script_is_asked_to_ensure_and_told_what_the_suite_changes(tmp_path: Path) -> None:
    script = exports_script(tmp_path / "context.sh", exported("/k k/config"), said="on kind-x")
    choice = choose_cluster(script=script)
    assert choice == ClusterChoice("/k k/config", "/opt/k 8s/kubectl", "kind-x", "kind", "home",
                                   choice.said)  # fmt: skip
    assert "args: --ensure --changes run the test suite" in choice.said
    assert "on kind-x" in choice.said
    assert not choice.local
    assert "context kind-x (kind, from ~/.kube/config" in choice.describe()


def test_a_refusal_carries_what_the_script_said(tmp_path: Path) -> None:
    said = "ERROR: the cluster KUBECONFIG=/x names does not answer"
    script = exports_script(tmp_path / "context.sh", {}, rc=1, said=said)
    with pytest.raises(ClusterChoiceError, match="does not answer"):
        choose_cluster(script=script)


def test_one_kubeconfig_is_used_as_it_is(tmp_path: Path) -> None:
    choice = ClusterChoice(f"{tmp_path}/config{os.pathsep}", "kubectl", "c", "kind", "KUBECONFIG")
    assert single_kubeconfig(choice, tmp_path / "out") == tmp_path / "config"
    assert not (tmp_path / "out").exists()


def kubeconfig(path: Path, context: str, server: str, *, current: bool) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: v1
            kind: Config
            clusters: [{{name: {context}, cluster: {{server: "{server}"}}}}]
            users: [{{name: {context}, user: {{token: secret-{context}}}}}]
            contexts: [{{name: {context}, context: {{cluster: {context}, user: {context}}}}}]
            """
        )
        + (f"current-context: {context}\n" if current else "")
    )
    return path


def test_a_kubeconfig_list_is_merged_into_one_private_file(tmp_path: Path) -> None:
    kubectl = support.find_kubectl()
    if kubectl is None:
        pytest.skip("no kubectl to merge kubeconfigs with")
    first = kubeconfig(tmp_path / "a", "kind-a", "https://127.0.0.1:1", current=True)
    second = kubeconfig(tmp_path / "b", "other-b", "https://127.0.0.1:2", current=False)
    listed = ClusterChoice(f"{first}{os.pathsep}{second}", kubectl, "kind-a", "kind", "KUBECONFIG")
    merged = single_kubeconfig(listed, tmp_path / "out")
    assert merged.parent == tmp_path / "out"
    assert merged.stat().st_mode & 0o077 == 0
    text = merged.read_text()
    assert "current-context: kind-a" in text and "secret-kind-a" in text
    assert "other-b" not in text, "minified to the current context"


def test_the_kubectl_finder_is_context_sh_s() -> None:
    found = support.find_kubectl()
    expected = subprocess.run(
        ["bash", "-c", f"source {shlex.quote(str(support.CONTEXT_SH))}; find_kubectl"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    assert found == (expected or None)


# --- what is skipped where --------------------------------------------------------------------


def never() -> ClusterChoice | None:
    raise AssertionError("no cluster choice was needed")


def test_local_node_tests_skip_on_another_cluster_only() -> None:
    items = [Collected(frozenset({LOCAL_NODE, "cluster"})), Collected(frozenset({"cluster"}))]
    assert plan_skips(items, lambda: KIND, {}) == {0: LOCAL_NODE_REASON}
    assert plan_skips(items, lambda: LOCAL, {}) == {}
    assert plan_skips(items, lambda: None, {}) == {}, "no choice: the fixture says why"


def test_no_choice_is_made_when_no_local_node_test_would_run() -> None:
    assert plan_skips([Collected(frozenset({"cluster"}))], never, {}) == {}
    skipped_already = Collected(frozenset({LOCAL_NODE}), skipped=True)
    assert plan_skips([skipped_already], never, {}) == {}


def test_beside_local_tests_run_only_when_asked() -> None:
    items = [Collected(frozenset({BESIDE_LOCAL}))]
    assert plan_skips(items, never, {}) == {0: BESIDE_LOCAL_REASON}
    assert plan_skips(items, never, {BESIDE_LOCAL_ENV: "1"}) == {}


def test_the_skips_through_a_pytest_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The session's hooks and fixture (tests/conftest.py as a plugin) on a stand-in choice."""
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "markers =\n    local_node: x\n    beside_local: x\n    kubelet: x\n"
    )
    pytester.makepyfile(
        test_some="""
        import pytest

        @pytest.mark.local_node
        def test_on_the_node(kube_cluster):
            assert kube_cluster.local

        def test_anywhere():
            pass

        @pytest.mark.beside_local
        def test_next_to_local():
            pass
        """
    )
    monkeypatch.setenv(images.TEST_IMAGE_ENV, "busybox:1.36")  # nothing built or loaded
    monkeypatch.delenv(BESIDE_LOCAL_ENV, raising=False)
    config = str(kubeconfig(tmp_path / "config", "kind-x", "https://127.0.0.1:1", current=True))
    for flavour, outcomes in (
        ("kind", {"passed": 1, "skipped": 2}),
        ("local", {"passed": 2, "skipped": 1}),
    ):
        monkeypatch.setattr(
            support,
            "CONTEXT_SH",
            exports_script(tmp_path / f"{flavour}.sh", exported(config, flavour)),
        )
        result = pytester.runpytest(
            "-p", "tests.conftest", "-rs", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"
        )
        result.assert_outcomes(**outcomes)
        if flavour == "kind":
            result.stdout.fnmatch_lines(
                [
                    f"*cluster: context kind-x (kind, from ~/.kube/config; KUBECONFIG={config})*",
                    f"*{LOCAL_NODE_REASON}*",
                    f"*{BESIDE_LOCAL_REASON}*",
                ]
            )


# --- the tests' image ---------------------------------------------------------------------------


def test_the_built_image_is_never_pulled_a_chosen_one_is() -> None:
    assert images.chosen_test_image({}) is None
    assert images.chosen_test_image({images.TEST_IMAGE_ENV: "busybox:1.36"}) == "busybox:1.36"
    assert images.chosen_test_image({images.OLD_TEST_IMAGE_ENV: "b:1"}) == "b:1"
    assert images.pull_policy(images.BUILT_TESTBOX) == "Never"
    assert images.pull_policy("busybox:1.36") == "IfNotPresent"
    assert images.TESTBOX_PULL_POLICY == images.pull_policy(images.TESTBOX)


def test_a_chosen_image_cache_is_kept() -> None:
    env = images.build_env({"PODTRAIL_CACHE_DIR": "/somewhere", "HOME": "/h"})
    assert env["PODTRAIL_CACHE_DIR"] == "/somewhere"
