// AudioWorklet: hands the microphone's samples (first channel, float32) to the page as they arrive.
class Recorder extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor("plastispoof-recorder", Recorder);
