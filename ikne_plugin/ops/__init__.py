"""Point-cloud ops of IKNE: thin wrappers over the compiled ``ikne_plugin._ext``,
each with a pure-PyTorch reference (the test oracle and the fallback)."""
from .ball_query import ball_query, ball_query_reference
from .furthest_point_sample import furthest_point_sample, furthest_point_sample_reference
from .rpe_attention_bias import rpe_attention_bias, rpe_attention_bias_reference
from .rpe_attention_value import rpe_attention_value, rpe_attention_value_reference
from .segment_mesh import segment_mesh
from .voxel_pool import voxel_pool, voxel_pool_reference
from .voxelize import voxelize, voxelize_reference

__all__ = [
    'voxelize', 'voxelize_reference', 'voxel_pool', 'voxel_pool_reference',
    'rpe_attention_bias', 'rpe_attention_bias_reference', 'rpe_attention_value',
    'rpe_attention_value_reference', 'segment_mesh',
    'furthest_point_sample', 'furthest_point_sample_reference', 'ball_query', 'ball_query_reference',
]
