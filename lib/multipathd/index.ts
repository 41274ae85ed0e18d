// multipathd cooperation: the socket client, its parsers and the path actions.
export { FramingError, FrameDecoder, encodeFrame, LENGTH_BYTES, MAX_COMMAND_BYTES, MAX_REPLY_BYTES } from './framing';
export { MultipathdError, type MultipathdErrorCode } from './errors';
export { MultipathdClient, ABSTRACT_SOCKET, PATHNAME_SOCKET, DEFAULT_TIMEOUT_MS, interpretReply, cliWords, type MultipathdClientOptions, type MultipathdCallOptions } from './client';
export { parseFormatted, formatOf, toMap, toPath, PATH_FIELDS, MAP_FIELDS, type FormatField, type MultipathdMap, type MultipathdPath } from './parse';
export {
  MultipathdActions, chooseActions, detectMultipathd,
  type MultipathdActionsOptions, type MultipathdDetection, type DetectOptions, type ActionsPreference, type ChooseActionsOptions,
} from './actions';
