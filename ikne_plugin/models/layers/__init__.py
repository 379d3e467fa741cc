"""Building blocks of the IKNE heads (attention, position encodings, MLPs, point aggregators)."""
from .contextual_rpe import key_rpe_bias, query_rpe_bias, relative_position_bins, value_table_to_op_layout
from .grouped_linear import grouped_linear
from .mlp import MLP
from .point_aggregator import PointAggregator
from .position_encoding import FourierPositionEncoding
from .pre_projected_attention import PreProjectedAttention
from .query_decoder_layer import QueryDecoderLayer

__all__ = ['FourierPositionEncoding', 'grouped_linear', 'MLP', 'PointAggregator', 'PreProjectedAttention',
           'QueryDecoderLayer', 'relative_position_bins', 'query_rpe_bias', 'key_rpe_bias',
           'value_table_to_op_layout']
