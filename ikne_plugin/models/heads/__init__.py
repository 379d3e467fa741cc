"""Heads of IKNE."""
from .ikne_transformer_head import IKNETransformerHead, maft_decoder_key_to_head_key, maft_head_state_dict

__all__ = ['IKNETransformerHead', 'maft_decoder_key_to_head_key',
           'maft_head_state_dict']
