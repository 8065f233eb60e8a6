// A C entry point into kaldi-native-fbank's own OnlineFbank / OnlineMfcc, for ctypes.
//
// Why: knf's Python binding takes the waveform as a sequence and converts it sample by sample,
// and hands frames back one Python call at a time; on FSDD that is a quarter of the extraction
// time. Here the samples go in as a pointer and the frames come out with one memcpy each.
//
// Nothing is computed here: the frames come from the knf classes compiled into knf's Python
// extension module, which exports their symbols. vgs/features/knf_bulk.py builds this file
// against the headers that ship in the same wheel, with the wheel's C++ string ABI, loads the
// extension RTLD_GLOBAL so the symbols resolve, and checks the output against the Python binding
// before using it.
//
// It also reads plain 16-bit PCM WAV files into one stream for batch extraction
// (vgs_read_pcm16_stream), so that reading runs outside the GIL like the extraction does.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "kaldi-native-fbank/csrc/online-feature.h"

extern "C" {

// Field for field the options vgs.features.audio.knf_options sets; everything else keeps knf's
// default. Mirrored by KnfOptions in knf_bulk.py.
struct VgsKnfOptions {
  int32_t is_mfcc;
  float samp_freq;
  float frame_length_ms;
  float frame_shift_ms;
  float dither;
  float preemph_coeff;
  int32_t remove_dc_offset;
  int32_t round_to_power_of_two;
  int32_t snip_edges;
  char window_type[32];
  int32_t num_bins;
  float low_freq;
  float high_freq;
  int32_t use_energy;
  int32_t num_ceps;
  float cepstral_lifter;
};

}  // extern "C"

namespace {

template <class Options>
void SetCommon(const VgsKnfOptions &o, Options *opts) {
  knf::FrameExtractionOptions &f = opts->frame_opts;
  f.samp_freq = o.samp_freq;
  f.frame_length_ms = o.frame_length_ms;
  f.frame_shift_ms = o.frame_shift_ms;
  f.dither = o.dither;
  f.preemph_coeff = o.preemph_coeff;
  f.remove_dc_offset = o.remove_dc_offset != 0;
  f.window_type = std::string(o.window_type, strnlen(o.window_type, sizeof(o.window_type)));
  f.round_to_power_of_two = o.round_to_power_of_two != 0;
  f.snip_edges = o.snip_edges != 0;
  opts->mel_opts.num_bins = o.num_bins;
  opts->mel_opts.low_freq = o.low_freq;
  opts->mel_opts.high_freq = o.high_freq;
  opts->use_energy = o.use_energy != 0;
}

template <class Extractor>
int64_t Run(Extractor *extractor, float samp_freq, const float *wave, int64_t n, float *out,
            int64_t capacity) {
  // AcceptWaveform counts samples in int32; feed very long input in pieces.
  const int64_t piece = int64_t{1} << 24;
  for (int64_t start = 0; start < n; start += piece) {
    extractor->AcceptWaveform(samp_freq, wave + start,
                              static_cast<int32_t>(std::min(piece, n - start)));
  }
  extractor->InputFinished();
  const int64_t frames = extractor->NumFramesReady();
  const int32_t dim = extractor->Dim();
  for (int64_t t = 0; t < std::min(frames, capacity); ++t) {
    std::memcpy(out + t * dim, extractor->GetFrame(static_cast<int32_t>(t)), dim * sizeof(float));
  }
  return frames;
}

uint32_t Le16(const unsigned char *p) { return p[0] | (p[1] << 8); }
uint32_t Le32(const unsigned char *p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

bool ReadWholeFile(const char *path, std::vector<unsigned char> *bytes) {
  const int fd = open(path, O_RDONLY);
  if (fd < 0) return false;
  struct stat st;
  bool ok = fstat(fd, &st) == 0 && st.st_size >= 0;
  if (ok) {
    bytes->resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < bytes->size()) {
      const ssize_t got = read(fd, bytes->data() + done, bytes->size() - done);
      if (got <= 0) break;
      done += static_cast<size_t>(got);
    }
    bytes->resize(done);
  }
  close(fd);
  return ok;
}

// The samples of a 16-bit PCM RIFF WAV file, by the rules of vgs/corpora/wav.py's
// read_pcm16_wav, which this must accept no more than: the first "data" chunk, read with the
// last "fmt " chunk before it. Sets *data to the first sample's bytes; false when not plain PCM16.
bool ParsePcm16(const std::vector<unsigned char> &b, const unsigned char **data, int64_t *frames,
                uint32_t *channels, uint32_t *rate) {
  const int64_t len = static_cast<int64_t>(b.size());
  if (len < 12 || std::memcmp(b.data(), "RIFF", 4) != 0 || std::memcmp(b.data() + 8, "WAVE", 4) != 0) {
    return false;
  }
  bool have_fmt = false;
  uint32_t tag = 0, block_align = 0, bits = 0;
  int64_t pos = 12;
  while (pos + 8 <= len) {
    const unsigned char *chunk = b.data() + pos;
    const int64_t size = Le32(chunk + 4);
    const int64_t body = pos + 8;
    if (std::memcmp(chunk, "fmt ", 4) == 0) {
      if (size < 16 || body + 16 > len) return false;
      const unsigned char *f = b.data() + body;
      tag = Le16(f);
      *channels = Le16(f + 2);
      *rate = Le32(f + 4);
      block_align = Le16(f + 12);
      bits = Le16(f + 14);
      have_fmt = true;
    } else if (std::memcmp(chunk, "data", 4) == 0) {
      if (!have_fmt || tag != 1 || bits != 16 || *channels < 1 || block_align != 2 * *channels ||
          *rate < 1 || size % block_align != 0 || body + size > len) {
        return false;
      }
      *data = b.data() + body;
      *frames = size / block_align;
      return true;
    }
    pos = body + size + (size & 1);
  }
  return false;
}

void Report(const char *what, char *error, int64_t error_size) {
  if (error != nullptr && error_size > 0) {
    std::strncpy(error, what, error_size - 1);
    error[error_size - 1] = '\0';
  }
}

}  // namespace

extern "C" {

// Features of `n` samples into `out` (row-major, `capacity` rows of the extractor's dim).
// Returns the number of frames knf produced, which may exceed `capacity` (then only `capacity`
// rows are written), or -1 with a message in `error`.
int64_t vgs_knf_compute(const VgsKnfOptions *o, const float *wave, int64_t n, float *out,
                        int64_t capacity, char *error, int64_t error_size) {
  try {
    if (o->is_mfcc) {
      knf::MfccOptions opts;
      SetCommon(*o, &opts);
      opts.num_ceps = o->num_ceps;
      opts.cepstral_lifter = o->cepstral_lifter;
      knf::OnlineMfcc extractor(opts);
      return Run(&extractor, o->samp_freq, wave, n, out, capacity);
    }
    knf::FbankOptions opts;
    SetCommon(*o, &opts);
    knf::OnlineFbank extractor(opts);
    return Run(&extractor, o->samp_freq, wave, n, out, capacity);
  } catch (const std::exception &exc) {
    Report(exc.what(), error, error_size);
  } catch (...) {
    Report("unknown C++ exception in kaldi-native-fbank", error, error_size);
  }
  return -1;
}

// Reads a batch of WAV files into one stream for vgs/features/audio.py's batch extraction, so
// that reading, like the extraction, runs without Python's GIL. File i is taken when it is 16-bit
// PCM, mono, at `rate` Hz and at least `min_samples` long: its samples, as float32 in [-1, 1)
// (times 1/32768, as libsndfile and read_pcm16_wav give them) then times `scale`, are written
// from starts[i], a multiple of `shift`, and the gap to the next multiple is zero. Every other
// file gets lengths[i] = -1 and is left to the Python reader, which gives the same samples or the
// error to report. Returns the stream length the batch needs; only when it is at most `capacity`
// is the stream complete.
int64_t vgs_read_pcm16_stream(const char *const *paths, int32_t n, int32_t rate, int32_t shift,
                              int64_t min_samples, float scale, float *stream, int64_t capacity,
                              int64_t *starts, int64_t *lengths) {
  std::vector<unsigned char> bytes;
  int64_t at = 0;
  for (int32_t i = 0; i < n; ++i) {
    lengths[i] = -1;
    starts[i] = -1;
    const unsigned char *data = nullptr;
    int64_t frames = 0;
    uint32_t channels = 0, file_rate = 0;
    if (!ReadWholeFile(paths[i], &bytes) || !ParsePcm16(bytes, &data, &frames, &channels, &file_rate) ||
        channels != 1 || file_rate != static_cast<uint32_t>(rate) || frames < std::max<int64_t>(min_samples, 1)) {
      continue;
    }
    const int64_t padded = (frames + shift - 1) / shift * shift;
    starts[i] = at;
    lengths[i] = frames;
    if (at + padded <= capacity) {
      float *out = stream + at;
      for (int64_t k = 0; k < frames; ++k) {
        const int16_t sample = static_cast<int16_t>(Le16(data + 2 * k));
        // Two float multiplications, in this order, as numpy does them: the same bits.
        const float unit = static_cast<float>(sample) * (1.0f / 32768.0f);
        out[k] = unit * scale;
      }
      std::fill(out + frames, out + padded, 0.0f);
    }
    at += padded;
  }
  return at;
}

// Lets the loader check that the library it found is this file's build.
int32_t vgs_knf_abi_version() { return 2; }

}  // extern "C"
