"""infrablocks.cloud.local.jobs: job files, validation, and the XML-RPC client against a real
supervisord (Debian's, started per test on a loopback address and stopped afterwards)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.cloud.local.jobs import (
    JobError,
    Scheduler,
    SchedulerUnreachable,
    config_path,
    job_spec,
    render_program,
)
from infrablocks.errors import ConfigError
from infrablocks.waiting import poll
from tests.support.subnets import hold_during_module

SUPERVISORD = "/usr/bin/supervisord"
NODE_IP = "127.42.224.31"
held_subnets = hold_during_module("127.42.224.0/24")   # supervisord binds NODE_IP
PORT = 9001


def option(text: str, key: str) -> str:
    return next(line.split("=", 1)[1] for line in text.splitlines()
                if line.startswith(f"{key}="))


# --------------------------------------------------------------------------- job files

def test_command_is_quoted_for_supervisord_and_percent_doubled(tmp_path):
    spec = job_spec("web", ["/usr/bin/python3", "-c", "print('a b', 100 % 7)"])
    text = render_program(spec, tmp_path)
    assert "[program:web]" in text
    command = option(text, "command")
    assert shlex.split(command.replace("%%", "%")) == list(spec.command)
    assert "%%" in command


def test_environment_values_are_quoted_and_sorted(tmp_path):
    spec = job_spec("web", ["/bin/true"], {"B": 'say "hi" now', "A": "x y,z", "P": "5%"})
    assert option(render_program(spec, tmp_path), "environment") == \
        "A=\"x y,z\",B='say \"hi\" now',P=\"5%%\""


def test_directory_logs_and_restart_policy(tmp_path):
    spec = job_spec("web", ["/bin/true"], directory="/srv/app")
    text = render_program(spec, tmp_path)
    assert option(text, "directory") == "/srv/app"
    assert option(text, "autorestart") == "true"
    assert option(text, "stdout_logfile") == str(tmp_path / "logs" / "web.log")
    assert config_path(tmp_path, "web") == tmp_path / "web.conf"


@pytest.mark.parametrize("kwargs, problem", [
    ({"name": "Web App"}, "name 'Web App'"),
    ({"name": "web:1"}, "name 'web:1'"),
    ({"command": []}, "command: give a non-empty list"),
    ({"command": ["/bin/echo", "a\nb"]}, "command: arguments cannot contain line breaks"),
    ({"environment": {"1X": "v"}}, "environment.1X: variable names"),
    ({"environment": {"X": "it's \"q\""}}, "environment.X: a value cannot contain both"),
    ({"environment": {"X": '"quoted"'}}, "environment.X: a value cannot start or end"),
    ({"environment": {"X": "a\nb"}}, "environment.X: values cannot contain line breaks"),
    ({"directory": "relative/dir"}, "directory 'relative/dir': must be an absolute path"),
])
def test_invalid_jobs_are_refused_naming_the_field(kwargs, problem):
    fields = {"name": "web", "command": ["/bin/true"], **kwargs}
    with pytest.raises(ConfigError) as caught:
        job_spec(**fields)
    assert any(problem in p for p in caught.value.problems), caught.value.problems
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("url", ["127.0.0.1:9001", "https://127.0.0.1:9001", "http://host"])
def test_scheduler_url_must_be_http_host_port(url):
    with pytest.raises(ConfigError, match="scheduler_url"):
        Scheduler(url)


# --------------------------------------------------------------------------- a real supervisord

@pytest.fixture
def supervisord(tmp_path: Path) -> Iterator[tuple[Scheduler, Path]]:
    """supervisord on NODE_IP:PORT including ``jobs/*.conf``; killed (group) at teardown."""
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    config = tmp_path / "supervisord.conf"
    config.write_text("\n".join([
        "[supervisord]", "nodaemon=true", "user=root", f"logfile={tmp_path}/supervisord.log",
        f"pidfile={tmp_path}/supervisord.pid", f"childlogdir={tmp_path}",
        "[inet_http_server]", f"port={NODE_IP}:{PORT}",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[include]", f"files = {jobs_dir}/*.conf", ""]))
    process = subprocess.Popen([SUPERVISORD, "-c", str(config)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        scheduler = Scheduler(f"http://{NODE_IP}:{PORT}")
        scheduler.wait_serving(timeout=15)
        yield scheduler, jobs_dir
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with pytest.raises(ProcessLookupError):  # nothing of the group is left
            os.killpg(process.pid, 0)


def reporter_job(name: str, out: Path, **kwargs):
    """A job that writes its environment and working directory to ``out``, then idles."""
    code = ("import json, os, pathlib, time; "
            f"pathlib.Path({str(out)!r}).write_text(json.dumps("
            "{'env': dict(os.environ), 'cwd': os.getcwd()})); time.sleep(3600)")
    return job_spec(name, ["/usr/bin/python3", "-c", code], **kwargs)


def wait_for_file(path: Path, timeout: float = 10) -> str:
    assert poll(lambda: path.exists() and path.read_text(), timeout=timeout,
                interval=0.1).ok, f"{path} was never written"
    return path.read_text()


@pytest.mark.slow
def test_submit_runs_the_job_with_its_environment_and_directory(supervisord, tmp_path):
    scheduler, jobs_dir = supervisord
    out = tmp_path / "report.json"
    spec = reporter_job("reporter", out, environment={"GREETING": "hello, world", "P": "50%"},
                        directory=str(tmp_path))
    status = scheduler.submit(spec, jobs_dir)
    assert status.state == "RUNNING" and status.pid > 0
    report = json.loads(wait_for_file(out))
    assert report["env"]["GREETING"] == "hello, world"
    assert report["env"]["P"] == "50%"
    assert report["cwd"] == str(tmp_path)
    assert (jobs_dir / "reporter.conf").stat().st_mode & 0o777 == 0o600
    assert scheduler.status("reporter").pid == status.pid


@pytest.mark.slow
def test_remove_stops_unloads_and_deletes_the_file(supervisord, tmp_path):
    scheduler, jobs_dir = supervisord
    status = scheduler.submit(reporter_job("doomed", tmp_path / "r.json"), jobs_dir)
    scheduler.remove("doomed", jobs_dir)
    assert scheduler.status("doomed") is None
    assert not (jobs_dir / "doomed.conf").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(status.pid, 0)
    scheduler.remove("doomed", jobs_dir)            # removing again is not an error


@pytest.mark.slow
def test_submitting_an_existing_name_replaces_the_job(supervisord, tmp_path):
    scheduler, jobs_dir = supervisord
    first = scheduler.submit(reporter_job("again", tmp_path / "1.json"), jobs_dir)
    second = scheduler.submit(reporter_job("again", tmp_path / "2.json"), jobs_dir)
    assert second.pid != first.pid
    wait_for_file(tmp_path / "2.json")


def test_unknown_job_reads_as_missing(supervisord):
    scheduler, _ = supervisord
    assert scheduler.status("never-submitted") is None


@pytest.mark.slow
def test_a_job_that_cannot_start_fails_with_its_log(supervisord):
    scheduler, jobs_dir = supervisord
    spec = job_spec("broken", ["/usr/bin/python3", "-c",
                               "import sys; print('no database here'); sys.exit(3)"],
                    environment={"PYTHONUNBUFFERED": "1"})
    with pytest.raises(JobError) as caught:
        scheduler.submit(spec, jobs_dir, timeout=30)
    assert "job broken did not start (state FATAL)" in str(caught.value)
    assert "no database here" in str(caught.value)
    scheduler.remove("broken", jobs_dir)


def test_submit_into_a_missing_jobs_dir_names_it(supervisord, tmp_path):
    scheduler, _ = supervisord
    with pytest.raises(JobError, match="jobs_dir .*nowhere does not exist"):
        scheduler.submit(job_spec("web", ["/bin/true"]), tmp_path / "nowhere")


def test_nothing_listening_is_unreachable_and_remove_still_drops_the_file(tmp_path):
    scheduler = Scheduler("http://127.42.224.32:9001", timeout=2)
    with pytest.raises(SchedulerUnreachable, match="127.42.224.32:9001"):
        scheduler.status("web")
    with pytest.raises(SchedulerUnreachable, match="waited 1s"):
        scheduler.wait_serving(timeout=1)
    (tmp_path / "web.conf").write_text("[program:web]\ncommand=/bin/true\n")
    scheduler.remove("web", tmp_path)
    assert not (tmp_path / "web.conf").exists()

