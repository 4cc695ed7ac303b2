"""`edge-agent bench sites` at CI size: small worlds, seeded, asserting behaviour (never timings)."""

from __future__ import annotations

from bench.sites import WorldConfig, run_simulation, simulate

SMALL = WorldConfig(sites=4, boards=16, tasks=300, seed=3, duration_s=60.0)


def test_summaries_carry_far_fewer_wan_messages_than_every_state() -> None:
    full, summaries = simulate(SMALL, "full"), simulate(SMALL, "summaries")
    assert summaries.state_messages_per_s_per_site * 5 < full.state_messages_per_s_per_site
    assert summaries.answered == full.answered == SMALL.tasks


def test_tasks_stay_on_their_site_without_losing_accuracy_against_the_oracle() -> None:
    summaries, oracle = simulate(SMALL, "summaries"), simulate(SMALL, "oracle")
    assert summaries.own_site_share >= 0.95
    assert oracle.accuracy - summaries.accuracy <= 0.01
    assert summaries.reasons.get("local_qualifies", 0) >= 0.9 * SMALL.tasks


def test_routing_without_locality_crosses_links_for_nothing() -> None:
    everywhere = simulate(SMALL, "global")
    assert everywhere.own_site_share < 0.6  # the best agent anywhere: mostly at another site
    assert everywhere.task_messages_per_s_per_site > simulate(SMALL, "summaries").task_messages_per_s_per_site


def test_a_site_cut_off_from_the_hub_keeps_answering_its_own_tasks() -> None:
    config = WorldConfig(sites=4, boards=16, tasks=300, seed=3, duration_s=60.0, cut=(0, 10.0, 40.0))
    for mode in ("summaries", "full"):
        _, sim = run_simulation(config, mode)
        during = [outcome for outcome in sim.outcomes if outcome[0] == 0 and 10.0 <= outcome[1] < 40.0]
        assert during and all(answered == 0 for _, _, answered in during), mode
        assert len(sim.outcomes) == config.tasks and all(answered is not None for *_, answered in sim.outcomes)


def test_a_failed_site_costs_no_other_sites_task() -> None:
    config = WorldConfig(sites=4, boards=16, tasks=300, seed=3, duration_s=60.0, failure=(1, 10.0, 40.0))
    _, sim = run_simulation(config, "summaries")
    others = [(at, answered) for site, at, answered in sim.outcomes if site != 1]
    assert others and all(answered is not None for _, answered in others)
    assert all(answered != 1 for at, answered in others if 10.0 <= at < 35.0)  # nothing placed on the dead site


def test_a_loaded_site_sends_work_across_the_link_and_says_why() -> None:
    hot = WorldConfig(sites=4, boards=4, tasks=1500, seed=3, duration_s=60.0, hot_site_share=0.7)
    figures = simulate(hot, "summaries")
    assert figures.reasons.get("local_loaded", 0) > 0
    assert figures.own_site_share < 1.0 and figures.task_messages_per_s_per_site > 0


def test_the_same_seed_gives_the_same_world_and_the_same_choices() -> None:
    first, second = run_simulation(SMALL, "summaries")[1], run_simulation(SMALL, "summaries")[1]
    assert first.outcomes == second.outcomes and first.reasons == second.reasons


def test_the_command_prints_figures_beside_their_goals_and_refuses_bad_options() -> None:
    import json

    from click.testing import CliRunner

    from edge_agent.cli.main import cli

    arguments = ["bench", "sites", "--sites", "2", "--boards", "4", "--tasks", "30", "--modes", "summaries,oracle"]
    result = CliRunner().invoke(cli, [*arguments, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout[result.stdout.index("{") :])
    assert [row["mode"] for row in figures["rows"]] == ["summaries", "oracle"]
    assert any(goal["goal"].startswith("own-site share") for goal in figures["goals"])
    printed = CliRunner().invoke(cli, arguments)
    assert printed.exit_code == 0 and "(goal >= 95%)" in printed.stdout
    assert CliRunner().invoke(cli, ["bench", "sites", "--sites", "2"]).exit_code == 2
    refused = CliRunner().invoke(cli, ["bench", "sites", "--modes", "summaries,everything"])
    assert refused.exit_code == 2 and "everything" in refused.output
