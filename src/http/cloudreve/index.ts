export { ok, errorEnvelope } from './envelope.ts';
export { fileDto, nodeDto, taskDto, userDto, MASTER_CAPABILITIES } from './dto.ts';
