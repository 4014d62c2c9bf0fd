"""One dynamic partition per canonical URL (key: host plus a hash, see ``canonical_url``)."""

from dagster import AssetSpec, DynamicPartitionsDefinition

URLS_PARTITIONS_NAME = "urls"
urls_partitions = DynamicPartitionsDefinition(name=URLS_PARTITIONS_NAME)

# The asset the ``load`` op materializes. Declaring it with the partitions definition also lets
# the GraphQL API add partitions (``addDynamicPartition`` only accepts definitions an asset uses).
library_item = AssetSpec(
    "library_item",
    partitions_def=urls_partitions,
    description="One library item per URL: Markdown, metadata and vectors of its latest version.",
    group_name="library",
)
