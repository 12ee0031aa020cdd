/**
 * @chiral/record: record, replay and watch chiral sessions. Episodes are MCAP
 * files in Foxglove's well-known schemas (`Topics`); the recording proxy
 * (`RecordingProxy`) and the recording transports (`RecordingTransport`)
 * write them without slowing anybody down (`Recorder`); `Episode` reads them
 * back; `LiveView` shows a live robot in Foxglove.
 */
export * as EpisodeWriter from "./EpisodeWriter.js"
export * as Json from "./Json.js"
export * as Protobuf from "./Protobuf.js"
export * as Recorder from "./Recorder.js"
export { RecordError } from "./Recorder.js"
export * as Topics from "./Topics.js"
export * as Episode from "./Episode.js"
export * as RecordingProxy from "./RecordingProxy.js"
export * as RecordingTransport from "./RecordingTransport.js"
export * as LiveView from "./LiveView.js"
export { ViewError } from "./LiveView.js"
export * as Replay from "./Replay.js"
