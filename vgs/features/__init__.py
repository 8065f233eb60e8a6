"""Kaldi fbank/MFCC (kaldi-native-fbank), image scaling, and the extraction driver."""
