"""The Prefect task of one shard of a sharded stage (augment): the same function the local
process pool runs, so a flow and `dvc repro` write the same shards."""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.stage_tasks import retry_unless_bad_input
from tinybert.sharding import Shard, ShardJob, compute_shard


# A shard already in the work folder is returned without recomputation, so a retried or
# resumed flow run redoes only what is missing; Prefect's own cache is not needed.
@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless_bad_input,
      task_run_name="shard-{shard.index}")
def shard_task(job: ShardJob, shard: Shard) -> dict:
    return compute_shard(job, shard)
