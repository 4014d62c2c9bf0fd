"""One dynamic partition per canonical URL (key: host plus a hash, see :mod:`librarian.runs`)."""

from dagster import AssetSpec, DynamicPartitionsDefinition

from librarian.runs import ASSET_NAME, PARTITIONS_NAME

urls_partitions = DynamicPartitionsDefinition(name=PARTITIONS_NAME)

# The asset the ``load`` op materializes. Declaring it with the partitions definition also lets
# the GraphQL API add partitions (``addDynamicPartition`` only accepts definitions an asset uses).
library_item = AssetSpec(
    ASSET_NAME,
    partitions_def=urls_partitions,
    description="One library item per URL: Markdown, metadata and vectors of its latest version.",
    group_name="library",
)
