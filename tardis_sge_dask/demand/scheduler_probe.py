"""Run inside the Dask scheduler: which waiting tasks insist on a site.

``adaptive_target`` says how many workers the scheduler wants, not where. A task kept to a
site asks for the resource ``site:<name>`` (docs/user-guide.md, direct mode), which only that
site's workers offer (drone-pilot.sh). This function is sent by value (cloudpickle) over the
scheduler's ``run_function`` handler, so the scheduler needs nothing of this package: it
imports nothing and touches only the scheduler state it is handed.
"""


def site_tasks(dask_scheduler=None, prefix="site:"):
    """{site: [tasks no worker can run, tasks assigned to its workers]} of tasks that ask
    for a ``site:`` resource."""
    found = {}

    def sites_of(task):
        return [
            name[len(prefix) :]
            for name in (task.resource_restrictions or {})
            if isinstance(name, str) and name.startswith(prefix)
        ]

    for task in list(dask_scheduler.unrunnable):
        for site in sites_of(task):
            found.setdefault(site, [0, 0])[0] += 1
    for worker in list(dask_scheduler.workers.values()):
        for task in list(worker.processing):
            for site in sites_of(task):
                found.setdefault(site, [0, 0])[1] += 1
    return found
